//! Starting, observing and stopping a simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use synapse_model::{FileHandle, StorageLocationSetting};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{App, EntitySnapshot, TableView};
use crate::config::{FaultConfig, SimConfig, ThrottleConfig};
use crate::error::SimError;
use crate::fixture::Fixture;
use crate::request_log::{RequestCounts, RequestRecord};
use crate::store::Store;
use crate::util::lock;

pub struct Simulator;

impl Simulator {
    /// Seeds `fixture` into S3 and serves on a free loopback port.
    pub async fn start(config: SimConfig, fixture: &Fixture) -> Result<RunningSim, SimError> {
        Self::start_on(config, fixture, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Seeds `fixture` into S3 and serves on `addr`.
    pub async fn start_on(
        config: SimConfig,
        fixture: &Fixture,
        addr: SocketAddr,
    ) -> Result<RunningSim, SimError> {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config.sdk_config)
                .force_path_style(true)
                .build(),
        );
        let endpoint = config
            .sdk_config
            .endpoint_url()
            .ok_or_else(|| SimError::Fixture("the S3 endpoint URL is not configured".into()))?
            .trim_end_matches('/')
            .to_owned();
        let mut store = Store::default();
        crate::seed::seed(&mut store, &s3, fixture, &config.region).await?;
        let app = Arc::new(App::new(store, s3, endpoint, &config));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = crate::api::router(app.clone());
        let task = tokio::spawn(async move {
            let router = router.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(RunningSim {
            base_url: format!("http://{local}"),
            app,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A serving simulator. Stops when [`RunningSim::shutdown`] is awaited or when dropped.
pub struct RunningSim {
    base_url: String,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn repo_endpoint(&self) -> String {
        format!("{}/repo/v1", self.base_url)
    }

    pub fn file_endpoint(&self) -> String {
        format!("{}/file/v1", self.base_url)
    }

    /// Nothing is served there (migration never logs in), but clients want a value.
    pub fn auth_endpoint(&self) -> String {
        format!("{}/auth/v1", self.base_url)
    }

    /// A `synapseclient` configuration file pointing the official Python client at this simulator
    /// (use it with `synapse -s -c FILE -p TOKEN ...`).
    pub fn python_client_config(&self) -> String {
        format!(
            "[endpoints]\nrepoEndpoint={}\nauthEndpoint={}\nfileHandleEndpoint={}\nportalEndpoint={}/\n",
            self.repo_endpoint(),
            self.auth_endpoint(),
            self.file_endpoint(),
            self.base_url
        )
    }

    /// The `synNNN` id of the entity at `Project/folder/.../name` (fixture names).
    pub fn entity_id(&self, path: &str) -> Option<String> {
        lock(&self.app.store).paths.get(path).cloned()
    }

    /// The `synNNN` id of the first project named `name`.
    pub fn project_id(&self, name: &str) -> Option<String> {
        lock(&self.app.store)
            .entities
            .values()
            .find(|e| e.parent.is_none() && e.name == name)
            .map(|e| e.syn_id())
    }

    /// Every seeded path with its entity id.
    pub fn paths(&self) -> Vec<(String, String)> {
        lock(&self.app.store)
            .paths
            .iter()
            .map(|(p, id)| (p.clone(), id.clone()))
            .collect()
    }

    pub fn entity(&self, id: &str) -> Option<EntitySnapshot> {
        self.app.snapshot(id)
    }

    /// A table's current rows (`None` for an entity that is no table).
    pub fn table(&self, id: &str) -> Option<TableView> {
        self.app.table(id)
    }

    pub fn file_handle(&self, id: &str) -> Option<FileHandle> {
        lock(&self.app.store).handle(id).cloned()
    }

    /// Every file handle in storage location `id` (for tests counting copies no entity uses).
    pub fn file_handles_in(&self, id: i64) -> Vec<FileHandle> {
        lock(&self.app.store)
            .handles
            .values()
            .filter(|h| h.storage_location_id == Some(id))
            .cloned()
            .collect()
    }

    pub fn storage_location(&self, id: i64) -> Option<StorageLocationSetting> {
        lock(&self.app.store)
            .locations
            .get(&id)
            .map(|l| l.setting.clone())
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.app.log.records()
    }

    pub fn request_counts(&self) -> RequestCounts {
        self.app.log.counts()
    }

    pub fn reset_requests(&self) {
        self.app.log.reset();
    }

    /// Changes the throttle at runtime (and forgets the current windows).
    pub fn set_throttle(&self, throttle: ThrottleConfig) {
        self.app.throttle.set_config(throttle);
    }

    /// Changes the injected faults at runtime, restarting their random streams.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.app.faults.set_config(faults);
    }

    pub fn set_presign_expiry(&self, expiry: Duration) {
        self.app.set_presign_expiry(expiry);
    }

    /// Stops accepting requests and waits for in-flight ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
