//! Docker engines through bollard: creating, starting, stopping, inspecting and removing notebook
//! containers and their volumes, on one configured host each. The rest of the crate sees only this
//! small surface; the API version is negotiated with each engine on first use.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::config::DockerHostConfig;

/// Labels every object carries. `mooc-lti.pool` is part of the operator contract.
pub const LABEL_POOL: &str = "mooc-lti.pool";
pub const LABEL_CONTAINER: &str = "mooc-lti.container";
pub const LABEL_HOST: &str = "mooc-lti.host";
pub const LABEL_DEPLOYMENT: &str = "mooc-lti.deployment";

/// Seconds a request to an engine may take.
const REQUEST_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("docker host {host}: cannot connect to {endpoint}: {source}")]
    Connect {
        host: String,
        endpoint: String,
        source: Box<bollard::errors::Error>,
    },
    #[error("docker host {host}: {op} {target}: {source}")]
    Api {
        host: String,
        op: &'static str,
        target: String,
        source: Box<bollard::errors::Error>,
    },
    #[error("docker host {host}: container {target} has no published port {port}/tcp")]
    NoPort {
        host: String,
        target: String,
        port: u16,
    },
}

impl DockerError {
    /// True when the engine answered 404 for the object.
    pub fn is_not_found(&self) -> bool {
        match self {
            DockerError::Api { source, .. } => matches!(
                **source,
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                }
            ),
            _ => false,
        }
    }

    /// True when the engine could not be reached at all (as opposed to refusing a request).
    pub fn is_unreachable(&self) -> bool {
        match self {
            DockerError::Connect { .. } => true,
            DockerError::Api { source, .. } => !matches!(
                &**source,
                bollard::errors::Error::DockerResponseServerError { .. }
                    | bollard::errors::Error::JsonDataError { .. }
                    | bollard::errors::Error::JsonSerdeError { .. }
            ),
            DockerError::NoPort { .. } => false,
        }
    }
}

pub type Result<T, E = DockerError> = std::result::Result<T, E>;

/// Docker ANDs several `label` filters.
fn label_filters(labels: &[(&str, &str)]) -> Vec<String> {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// What to run for one notebook.
#[derive(Debug, Clone)]
pub struct NotebookSpec {
    pub name: String,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub volume: String,
    pub home: String,
    pub port: u16,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids: i64,
}

/// A container as the engine reports it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub docker_id: String,
    pub name: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
    pub host_port: Option<u16>,
}

/// One Docker engine.
#[derive(Debug)]
pub struct DockerHost {
    pub config: DockerHostConfig,
    raw: Docker,
    negotiated: OnceCell<Docker>,
}

impl DockerHost {
    /// Prepares a client for the host's endpoint. Nothing is sent until first use, so a host that is
    /// down does not stop the server from starting.
    pub fn new(config: &DockerHostConfig) -> Result<DockerHost> {
        let connect_err = |source| DockerError::Connect {
            host: config.name.clone(),
            endpoint: config.endpoint.clone(),
            source: Box::new(source),
        };
        let version = bollard::API_DEFAULT_VERSION;
        let ep = config.endpoint.as_str();
        let raw = if let Some(path) = ep.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version).map_err(connect_err)?
        } else if let (Some(addr), Some(tls)) = (ep.strip_prefix("tcp://"), &config.tls) {
            // Docker's TLS: the engine verifies our client certificate, we verify its CA.
            Docker::connect_with_ssl(
                addr,
                &tls.key,
                &tls.cert,
                &tls.ca,
                REQUEST_TIMEOUT_SECS,
                version,
            )
            .map_err(connect_err)?
        } else if let Some(addr) = ep
            .strip_prefix("tcp://")
            .or_else(|| ep.strip_prefix("http://"))
        {
            Docker::connect_with_http(&format!("http://{addr}"), REQUEST_TIMEOUT_SECS, version)
                .map_err(connect_err)?
        } else if ep.starts_with("ssh://") {
            let key = config.ssh_key.as_ref().map(|k| k.display().to_string());
            Docker::connect_with_ssh(ep, REQUEST_TIMEOUT_SECS, version, key).map_err(connect_err)?
        } else {
            return Err(connect_err(
                bollard::errors::Error::UnsupportedURISchemeError { uri: ep.to_owned() },
            ));
        };
        Ok(DockerHost {
            config: config.clone(),
            raw,
            negotiated: OnceCell::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn api_err(
        &self,
        op: &'static str,
        target: &str,
    ) -> impl FnOnce(bollard::errors::Error) -> DockerError {
        let host = self.config.name.clone();
        let target = target.to_owned();
        move |source| DockerError::Api {
            host,
            op,
            target,
            source: Box::new(source),
        }
    }

    /// The client, with the API version agreed with the engine (older engines speak older versions).
    async fn client(&self) -> Result<&Docker> {
        self.negotiated
            .get_or_try_init(|| async {
                self.raw
                    .clone()
                    .negotiate_version()
                    .await
                    .map_err(self.api_err("negotiate API version with", &self.config.endpoint))
            })
            .await
    }

    /// The engine's version string (also a reachability check).
    pub async fn version(&self) -> Result<(String, String)> {
        let v = self
            .client()
            .await?
            .version()
            .await
            .map_err(self.api_err("version", &self.config.endpoint))?;
        Ok((
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
        ))
    }

    /// The engine's clock (UTC seconds), to detect skew.
    pub async fn system_time(&self) -> Result<Option<i64>> {
        let info = self
            .client()
            .await?
            .info()
            .await
            .map_err(self.api_err("info", &self.config.endpoint))?;
        Ok(info
            .system_time
            .as_deref()
            .and_then(crate::jupyter::parse_rfc3339))
    }

    /// Whether the image exists on this host (nothing is ever pulled implicitly).
    pub async fn image_present(&self, image: &str) -> Result<bool> {
        match self.client().await?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = self.api_err("inspect image", image)(e);
                if e.is_not_found() { Ok(false) } else { Err(e) }
            }
        }
    }

    /// Creates a named volume (idempotent: an existing one with the name is kept as it is).
    pub async fn create_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        self.client()
            .await?
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(self.api_err("create volume", name))?;
        Ok(())
    }

    /// Creates and starts a notebook container with its volume mounted at the notebook root and its
    /// port published on `publish_ip` at a port Docker chooses. Returns (docker id, host port).
    pub async fn create_and_start(&self, spec: &NotebookSpec) -> Result<(String, u16)> {
        let client = self.client().await?;
        let port_key = format!("{}/tcp", spec.port);
        let host_config = HostConfig {
            mounts: Some(vec![Mount {
                target: Some(spec.home.clone()),
                source: Some(spec.volume.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            port_bindings: Some(HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding {
                    // An empty host IP would publish on every interface.
                    host_ip: Some(self.config.publish_ip.to_string()),
                    host_port: Some(String::new()),
                }]),
            )])),
            memory: spec.memory,
            memory_swap: spec.memory,
            nano_cpus: spec.nano_cpus,
            pids_limit: Some(spec.pids),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            init: Some(true),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = client
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&spec.name)
                        .build(),
                ),
                body,
            )
            .await
            .map_err(self.api_err("create container", &spec.name))?;
        let port = self.start(&created.id, spec.port).await?;
        Ok((created.id, port))
    }

    /// Starts a container (a running one is left as is) and returns its published port, which Docker
    /// may change on every start.
    pub async fn start(&self, docker_id: &str, container_port: u16) -> Result<u16> {
        let client = self.client().await?;
        client
            .start_container(docker_id, None)
            .await
            .map_err(self.api_err("start container", docker_id))?;
        let observed = self
            .inspect(docker_id, container_port)
            .await?
            .ok_or_else(|| DockerError::NoPort {
                host: self.config.name.clone(),
                target: docker_id.to_owned(),
                port: container_port,
            })?;
        observed.host_port.ok_or_else(|| DockerError::NoPort {
            host: self.config.name.clone(),
            target: docker_id.to_owned(),
            port: container_port,
        })
    }

    /// Stops a container, giving Jupyter `grace` to save and exit. A missing container is not an error.
    pub async fn stop(&self, docker_id: &str, grace: Duration) -> Result<()> {
        let opts = StopContainerOptionsBuilder::new()
            .t(grace.as_secs() as i32)
            .build();
        match self
            .client()
            .await?
            .stop_container(docker_id, Some(opts))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = self.api_err("stop container", docker_id)(e);
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Force-removes a container (never its volume). A missing container is not an error.
    pub async fn remove_container(&self, docker_id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self
            .client()
            .await?
            .remove_container(docker_id, Some(opts))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = self.api_err("remove container", docker_id)(e);
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Removes a volume. A missing volume is not an error.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let opts = RemoveVolumeOptionsBuilder::new().force(true).build();
        match self.client().await?.remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = self.api_err("remove volume", name)(e);
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }

    /// The container's state, or `None` when the engine does not know it.
    pub async fn inspect(&self, docker_id: &str, container_port: u16) -> Result<Option<Observed>> {
        let info = match self
            .client()
            .await?
            .inspect_container(docker_id, None)
            .await
        {
            Ok(info) => info,
            Err(e) => {
                let e = self.api_err("inspect container", docker_id)(e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let port_key = format!("{container_port}/tcp");
        let host_port = info
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(&port_key).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port?.parse().ok()));
        Ok(Some(Observed {
            docker_id: info.id.unwrap_or_default(),
            name: info
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            running: info.state.as_ref().and_then(|s| s.running).unwrap_or(false),
            labels: info.config.and_then(|c| c.labels).unwrap_or_default(),
            host_port,
        }))
    }

    /// Every container (running or not) carrying all of `labels`.
    pub async fn list_labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<Observed>> {
        let filters = HashMap::from([("label", label_filters(labels))]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .client()
            .await?
            .list_containers(Some(opts))
            .await
            .map_err(self.api_err("list containers", "by label"))?;
        Ok(list
            .into_iter()
            .map(|c| Observed {
                docker_id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                running: matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                ),
                host_port: c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|p| p.public_port),
                labels: c.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// Names of every volume carrying all of `labels`.
    pub async fn list_labelled_volumes(&self, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        let filters = HashMap::from([("label", label_filters(labels))]);
        let opts = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let list = self
            .client()
            .await?
            .list_volumes(Some(opts))
            .await
            .map_err(self.api_err("list volumes", "by label"))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    /// Follows `die` and `destroy` events of containers carrying all of `labels`, as (action, name).
    pub async fn container_events(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<(String, String)>> + Send>>>
    {
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("label", label_filters(labels)),
            ("event", vec!["die".to_owned(), "destroy".to_owned()]),
        ]);
        let opts = bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build();
        let host = self.config.name.clone();
        let stream = self.client().await?.events(Some(opts)).map(move |item| {
            let event = item.map_err(|source| DockerError::Api {
                host: host.clone(),
                op: "follow events",
                target: "containers".into(),
                source: Box::new(source),
            })?;
            let name = event
                .actor
                .and_then(|a| a.attributes)
                .and_then(|mut attrs| attrs.remove("name"))
                .unwrap_or_default();
            Ok((event.action.unwrap_or_default(), name))
        });
        Ok(Box::pin(stream))
    }

    /// A container's output (stdout and stderr) from `tail` lines back, following new output when
    /// `follow` is set.
    pub async fn logs(
        &self,
        docker_id: &str,
        tail: usize,
        follow: bool,
    ) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<String>> + Send>>> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&tail.to_string())
            .build();
        let host = self.config.name.clone();
        let target = docker_id.to_owned();
        let stream = self
            .client()
            .await?
            .logs(docker_id, Some(opts))
            .map(move |item| {
                item.map(|chunk| chunk.to_string())
                    .map_err(|source| DockerError::Api {
                        host: host.clone(),
                        op: "logs",
                        target: target.clone(),
                        source: Box::new(source),
                    })
            });
        Ok(Box::pin(stream))
    }
}
