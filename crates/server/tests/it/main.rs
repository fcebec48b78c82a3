//! Integration tests of the control plane over real HTTP on loopback, through the client
//! crate. One test binary, made of modules.

mod admin_token;
mod common;
mod f1_lost_after_success;
mod f2_busy_is_linearizable;
mod f4_assign_races_retire;
mod fencing;
mod input;
mod openapi;
mod replicas;
mod webhooks;
