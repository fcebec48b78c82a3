//! The `docker` provider: each runner is a container on a Docker Engine, reached through its
//! API (the `bollard` client) on the local unix socket, `DOCKER_HOST`, or the pool's
//! `docker_host`.
//!
//! ```toml
//! provider = { kind = "docker", image = "example/baton:latest", network = "host" }
//! ```
//!
//! **The image must contain the `baton` binary on its `PATH`**: the container's command is
//! `baton runner`, configured entirely through the environment (`BATON_SERVER`,
//! `BATON_RUNNER_JIT`, `BATON_RUNNER_NAME`, `BATON_RUNNER_EPHEMERAL`, `BATON_RUNNER_CAPACITY`),
//! so an image's own `ENTRYPOINT` must accept that command. The image must already be on the
//! engine; the provider does not pull it. The runner must be able to reach the server's URL from
//! inside the container (every URL, when `BATON_SERVER` lists several replicas): for a server on
//! the host's loopback, use `network = "host"`.
//!
//! A runner `NAME` becomes the container `baton-NAME`, labelled `org.baton.pool=POOL` and
//! `org.baton.name=NAME`; its id is the container's id. Only running containers are instances;
//! a pool's containers that have exited (an ephemeral runner after its job, a runner that
//! failed) are removed when the pool is listed.
//!
//! The engine is connected to on first use, so a pool can be configured while the engine is
//! down; each call then fails until it is reachable.

use std::collections::HashMap;
use std::sync::Mutex;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};

use crate::provider::{BoxFuture, CreateRequest, Instance, Provider, ProviderError, ProviderResult};

/// The label carrying a container's pool.
pub const POOL_LABEL: &str = "org.baton.pool";
/// The label carrying a container's runner name.
pub const NAME_LABEL: &str = "org.baton.name";
/// Seconds a stopped runner gets between SIGTERM and SIGKILL.
const STOP_TIMEOUT_SECONDS: i32 = 10;
/// Seconds one request to the engine may take.
const REQUEST_TIMEOUT_SECONDS: u64 = 120;

/// Runners as containers of one image on a Docker Engine.
#[derive(Debug)]
pub struct DockerProvider {
    image: String,
    network: Option<String>,
    docker_host: Option<String>,
    /// The engine's client, made on first use.
    docker: Mutex<Option<Docker>>,
}

/// The name of a runner's container.
pub fn container_name(name: &str) -> String {
    format!("baton-{name}")
}

/// The container a request asks for: `baton runner` in `image`, configured through its
/// environment, labelled with its pool and name.
pub fn container_config(request: &CreateRequest, image: &str, network: Option<&str>) -> ContainerCreateBody {
    let labels =
        HashMap::from([(POOL_LABEL.to_string(), request.pool.clone()), (NAME_LABEL.to_string(), request.name.clone())]);
    let env = vec![
        format!("BATON_SERVER={}", request.server),
        format!("BATON_RUNNER_JIT={}", request.jit_config),
        format!("BATON_RUNNER_NAME={}", request.name),
        format!("BATON_RUNNER_EPHEMERAL={}", request.ephemeral),
        format!("BATON_RUNNER_CAPACITY={}", request.capacity),
    ];
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["baton".to_string(), "runner".to_string()]),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: network.map(str::to_string),
            auto_remove: Some(false),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// Whether the engine answered that the container (or other object) does not exist.
fn is_not_found(error: &DockerError) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code: 404, .. })
}

/// Whether the engine answered that the name is taken.
fn is_conflict(error: &DockerError) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code: 409, .. })
}

fn failed(what: impl std::fmt::Display, error: DockerError) -> ProviderError {
    ProviderError::Failed(format!("docker: {what}: {error}"))
}

/// A client for `host`: `unix:///PATH` for a socket, `tcp://` or `http://` for TCP.
fn connect(host: Option<&str>) -> Result<Docker, String> {
    let version = bollard::API_DEFAULT_VERSION;
    let result = match host {
        None => Docker::connect_with_defaults(),
        Some(host) if host.starts_with("unix://") => Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECONDS, version),
        Some(host) if host.starts_with("tcp://") || host.starts_with("http://") => {
            Docker::connect_with_http(host, REQUEST_TIMEOUT_SECONDS, version)
        }
        Some(host) => {
            return Err(format!("docker_host {host:?}: use unix://PATH, tcp://HOST:PORT or http://HOST:PORT"));
        }
    };
    let shown = host.map_or_else(|| "the default engine (DOCKER_HOST or the local socket)".to_string(), str::to_string);
    result.map_err(|error| format!("connect to {shown}: {error}"))
}

impl DockerProvider {
    /// Runners in containers of `image`, on `network` if given (a network name, or `host`), on
    /// the engine at `docker_host` [default: `DOCKER_HOST`, else the local socket]. Nothing is
    /// connected until the first call.
    pub fn new(image: String, network: Option<String>, docker_host: Option<String>) -> DockerProvider {
        DockerProvider { image, network, docker_host, docker: Mutex::new(None) }
    }

    /// The engine's client, connecting on first use; a failed connection is retried next call.
    fn docker(&self) -> ProviderResult<Docker> {
        let mut docker = self.docker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(docker) = docker.as_ref() {
            return Ok(docker.clone());
        }
        let connected = connect(self.docker_host.as_deref())
            .map_err(|message| ProviderError::Failed(format!("docker: {message}")))?;
        *docker = Some(connected.clone());
        Ok(connected)
    }

    /// The existing container of a runner, started if it was created but never started.
    async fn existing(&self, docker: &Docker, container: &str) -> ProviderResult<Option<String>> {
        let inspected = match docker.inspect_container(container, None::<InspectContainerOptions>).await {
            Ok(inspected) => inspected,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(failed(format!("inspect container {container}"), error)),
        };
        let Some(id) = inspected.id else {
            return Err(ProviderError::Failed(format!("docker: inspect container {container}: the engine gave no id")));
        };
        let created = inspected.state.and_then(|state| state.status) == Some(ContainerStateStatusEnum::CREATED);
        if created {
            docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .map_err(|error| failed(format!("start container {container}"), error))?;
        }
        Ok(Some(id))
    }
}

impl Provider for DockerProvider {
    fn create<'a>(&'a self, request: &'a CreateRequest) -> BoxFuture<'a, ProviderResult<Instance>> {
        Box::pin(async move {
            let docker = self.docker()?;
            let container = container_name(&request.name);
            let instance = |id: String| Instance { id, name: request.name.clone(), pool: request.pool.clone() };
            if let Some(id) = self.existing(&docker, &container).await? {
                return Ok(instance(id));
            }
            let options = CreateContainerOptions { name: Some(container.clone()), ..CreateContainerOptions::default() };
            let config = container_config(request, &self.image, self.network.as_deref());
            let id = match docker.create_container(Some(options), config).await {
                Ok(created) => created.id,
                // Another call created it meanwhile.
                Err(error) if is_conflict(&error) => match self.existing(&docker, &container).await? {
                    Some(id) => return Ok(instance(id)),
                    None => return Err(failed(format!("create container {container}"), error)),
                },
                Err(error) => {
                    return Err(failed(format!("create container {container} from image {}", self.image), error));
                }
            };
            docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .map_err(|error| failed(format!("start container {container}"), error))?;
            Ok(instance(id))
        })
    }

    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            let docker = self.docker()?;
            let stop = StopContainerOptions { t: Some(STOP_TIMEOUT_SECONDS), ..StopContainerOptions::default() };
            match docker.stop_container(id, Some(stop)).await {
                Ok(()) => {}
                Err(error) if is_not_found(&error) => return Ok(()),
                Err(error) => return Err(failed(format!("stop container {id}"), error)),
            }
            let remove = RemoveContainerOptions { force: true, ..RemoveContainerOptions::default() };
            match docker.remove_container(id, Some(remove)).await {
                Ok(()) => Ok(()),
                Err(error) if is_not_found(&error) => Ok(()),
                // Already being removed by another call.
                Err(error) if is_conflict(&error) => Ok(()),
                Err(error) => Err(failed(format!("remove container {id}"), error)),
            }
        })
    }

    fn list<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, ProviderResult<Vec<Instance>>> {
        Box::pin(async move {
            let docker = self.docker()?;
            let filters = HashMap::from([("label".to_string(), vec![format!("{POOL_LABEL}={pool}")])]);
            let options =
                ListContainersOptions { all: true, filters: Some(filters), ..ListContainersOptions::default() };
            let containers = docker
                .list_containers(Some(options))
                .await
                .map_err(|error| failed(format!("list the containers of pool {pool}"), error))?;
            let mut instances = Vec::new();
            for container in containers {
                let Some(id) = container.id else { continue };
                match container.state {
                    Some(ContainerSummaryStateEnum::RUNNING) => {}
                    Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => {
                        // A runner that left; best effort, the next list tries again.
                        let remove = RemoveContainerOptions { force: true, ..RemoveContainerOptions::default() };
                        if let Err(error) = docker.remove_container(&id, Some(remove)).await {
                            tracing::debug!(container = %id, %error, "docker: remove an exited runner's container");
                        }
                        continue;
                    }
                    // Created (being started), paused, restarting, removing: not a runner now.
                    _ => continue,
                }
                let name = container.labels.as_ref().and_then(|labels| labels.get(NAME_LABEL)).cloned();
                let Some(name) = name else { continue };
                instances.push(Instance { id, name, pool: pool.to_string() });
            }
            Ok(instances)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CreateRequest {
        CreateRequest {
            name: "linux-0000beef".into(),
            pool: "linux".into(),
            labels: vec!["linux".into()],
            server: "http://127.0.0.1:8080".into(),
            jit_config: "jit-secret".into(),
            ephemeral: true,
            capacity: 2,
        }
    }

    #[test]
    fn a_runner_is_named_baton_dash_name() {
        assert_eq!(container_name("linux-0000beef"), "baton-linux-0000beef");
    }

    #[test]
    fn the_container_runs_baton_runner_configured_through_its_environment() {
        let config = container_config(&request(), "example/baton:1", Some("host"));
        assert_eq!(config.image.as_deref(), Some("example/baton:1"));
        assert_eq!(config.cmd, Some(vec!["baton".to_string(), "runner".to_string()]));
        assert_eq!(
            config.env,
            Some(vec![
                "BATON_SERVER=http://127.0.0.1:8080".to_string(),
                "BATON_RUNNER_JIT=jit-secret".to_string(),
                "BATON_RUNNER_NAME=linux-0000beef".to_string(),
                "BATON_RUNNER_EPHEMERAL=true".to_string(),
                "BATON_RUNNER_CAPACITY=2".to_string(),
            ])
        );
        let labels = config.labels.expect("labels");
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.get(POOL_LABEL).map(String::as_str), Some("linux"));
        assert_eq!(labels.get(NAME_LABEL).map(String::as_str), Some("linux-0000beef"));
        let host = config.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.auto_remove, Some(false));
    }

    #[test]
    fn a_server_list_reaches_the_runner_whole() {
        let request = CreateRequest { server: "http://ci-a:8080,http://ci-b:8080".into(), ..request() };
        let env = container_config(&request, "img", None).env.expect("env");
        assert!(env.contains(&"BATON_SERVER=http://ci-a:8080,http://ci-b:8080".to_string()), "{env:?}");
    }

    #[test]
    fn a_persistent_runner_without_a_network() {
        let request = CreateRequest { ephemeral: false, ..request() };
        let config = container_config(&request, "img", None);
        let env = config.env.expect("env");
        assert!(env.contains(&"BATON_RUNNER_EPHEMERAL=false".to_string()), "{env:?}");
        assert_eq!(config.host_config.expect("host config").network_mode, None);
    }

    #[test]
    fn unknown_docker_hosts_are_refused_without_connecting() {
        let error = connect(Some("ssh://somewhere")).expect_err("ssh is not enabled");
        assert!(error.contains("unix://PATH"), "{error}");
    }

    #[tokio::test]
    async fn constructing_never_connects() {
        let provider = DockerProvider::new("img".into(), None, Some("unix:///nonexistent/docker.sock".into()));
        let error = provider.list("linux").await.expect_err("no engine there").to_string();
        assert!(error.contains("/nonexistent/docker.sock"), "{error}");
    }

    /// Runs against a real engine when `BATON_TEST_DOCKER=1`, with `BATON_TEST_DOCKER_IMAGE`
    /// naming an image present on it. The image's `baton runner` need not succeed: the
    /// container only has to run for a moment (an image whose entrypoint ignores the command,
    /// e.g. one that sleeps, keeps it running for the whole test).
    #[tokio::test]
    async fn against_a_docker_engine() {
        if std::env::var("BATON_TEST_DOCKER").as_deref() != Ok("1") {
            eprintln!("skipped: set BATON_TEST_DOCKER=1 and BATON_TEST_DOCKER_IMAGE to run against a Docker engine");
            return;
        }
        let image = std::env::var("BATON_TEST_DOCKER_IMAGE")
            .expect("BATON_TEST_DOCKER=1 requires BATON_TEST_DOCKER_IMAGE to name an image on the engine");
        let docker = connect(None).expect("BATON_TEST_DOCKER=1 but no Docker engine could be reached");
        docker.ping().await.expect("BATON_TEST_DOCKER=1 but the Docker engine is not reachable");

        let provider = DockerProvider::new(image, None, None);
        let pool = format!("test{:08x}", rand::random::<u32>());
        let request = CreateRequest { name: format!("{pool}-1"), pool: pool.clone(), ..request() };
        let instance = provider.create(&request).await.expect("create");
        assert_eq!(instance.name, request.name);
        assert_eq!(instance.pool, pool);
        let again = provider.create(&request).await.expect("create again");
        assert_eq!(again.id, instance.id, "create is idempotent");

        let listed = provider.list(&pool).await.expect("list");
        assert_eq!(listed, vec![instance.clone()], "the container must still be running");

        provider.terminate(&instance.id).await.expect("terminate");
        assert_eq!(provider.list(&pool).await.expect("list"), vec![]);
        provider.terminate(&instance.id).await.expect("terminating again succeeds");
    }
}
