//! The simulated provider: machines are turmoil hosts the driver creates and crashes.
//!
//! The scaler's provider calls only queue requests; the driver carries them out between
//! simulation steps, and records each termination with what the store held for the machine's
//! runner at that very instant (invariant 3).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use baton_scaler::provider::{BoxFuture, CreateRequest, Instance, Provider, ProviderResult};

/// A machine to start: what its runner registers with.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub name: String,
    pub jit_config: String,
    pub capacity: u32,
    pub ephemeral: bool,
}

#[derive(Debug, Default)]
pub struct Machines {
    /// Created by the provider, not yet started by the driver.
    pub pending: Vec<MachineSpec>,
    /// Terminated by the provider, not yet crashed by the driver.
    pub doomed: Vec<String>,
    /// Machines that exist (created and not terminated), by name.
    pub existing: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SharedMachines(Arc<Mutex<Machines>>);

impl SharedMachines {
    pub fn lock(&self) -> MutexGuard<'_, Machines> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone)]
pub struct SimProvider {
    pub machines: SharedMachines,
    pub pool: String,
}

impl Provider for SimProvider {
    fn create<'a>(&'a self, request: &'a CreateRequest) -> BoxFuture<'a, ProviderResult<Instance>> {
        Box::pin(async move {
            let mut machines = self.machines.lock();
            if machines.existing.insert(request.name.clone()) {
                machines.pending.push(MachineSpec {
                    name: request.name.clone(),
                    jit_config: request.jit_config.clone(),
                    capacity: request.capacity,
                    ephemeral: request.ephemeral,
                });
            }
            Ok(Instance { id: request.name.clone(), name: request.name.clone(), pool: request.pool.clone() })
        })
    }

    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            let mut machines = self.machines.lock();
            if machines.existing.remove(id) {
                machines.doomed.push(id.to_string());
            }
            Ok(())
        })
    }

    fn list<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, ProviderResult<Vec<Instance>>> {
        Box::pin(async move {
            let machines = self.machines.lock();
            Ok(if pool == self.pool {
                machines
                    .existing
                    .iter()
                    .map(|name| Instance { id: name.clone(), name: name.clone(), pool: pool.to_string() })
                    .collect()
            } else {
                Vec::new()
            })
        })
    }
}
