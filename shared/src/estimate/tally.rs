//! What a run's work units will ask of Synapse and S3, counted unit by unit as Plan makes them:
//! the calls each engine makes per copy, per part and per unit (the sources in
//! `crate::copy::{synapse, direct}` and `crate::stages::{start_copy, complete}`), so no item list
//! is held, only counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{FileVersionStrategy, MigrationOptions};
use crate::context::Tuning;
use crate::copy::parts::{part_batches, PartPlan};
use crate::copy::{CopyMode, EngineKind, FILE_HANDLE_BATCH, MAX_COPY_OBJECT_SIZE};
use crate::stages::plan::units::{Planned, UnitItem, UnitKind, WorkUnit};
use crate::state::ItemKey;
use crate::Result;

/// The Synapse endpoints a run calls, named as the simulator's request log names them.
pub mod endpoint {
    pub const GET_ENTITY: &str = "GET /entity/{id}";
    pub const PERMISSIONS: &str = "GET /entity/{id}/permissions";
    pub const STORAGE_LOCATION: &str = "GET /storageLocation/{id}";
    pub const CHILDREN: &str = "POST /entity/children";
    pub const BUNDLE: &str = "POST /entity/{id}/bundle2";
    pub const VERSION_BUNDLE: &str = "POST /entity/{id}/version/{version}/bundle2";
    pub const VERSIONS: &str = "GET /entity/{id}/version";
    pub const HANDLE_BATCH: &str = "POST /fileHandle/batch";
    pub const START_COPY: &str = "POST /file/multipart";
    pub const PRESIGN: &str = "POST /file/multipart/{upload}/presigned/url/batch";
    pub const ADD_PART: &str = "PUT /file/multipart/{upload}/add/{part}";
    pub const COMPLETE_COPY: &str = "PUT /file/multipart/{upload}/complete";
    pub const EXTERNAL_HANDLE: &str = "POST /externalFileHandle/s3";
    pub const PUT_ENTITY: &str = "PUT /entity/{id}";
    pub const SWAP_HANDLE: &str = "PUT /entity/{id}/version/{version}/filehandle";
    pub const DELETE_HANDLE: &str = "DELETE /fileHandle/{id}";
    pub const QUERY_START: &str = "POST /entity/{id}/table/query/async/start";
    pub const QUERY_GET: &str = "GET /entity/{id}/table/query/async/get/{token}";
    pub const TRANSACTION_START: &str = "POST /entity/{id}/table/transaction/async/start";
    pub const TRANSACTION_GET: &str = "GET /entity/{id}/table/transaction/async/get/{token}";
}

/// Files per `POST /entity/children` page.
const CHILDREN_PAGE: u64 = 50;
/// Parts per ListParts page (S3's maximum, as the direct engine asks).
const LIST_PARTS_PAGE: u64 = 1000;

/// The options and tuning the counting follows.
#[derive(Debug, Clone)]
pub struct Params {
    /// The engine the copies are counted with (see [`Params::engine_for`]).
    pub engine: EngineKind,
    /// `copyMode auto` reads each source's HeadObject to choose.
    pub probes_sources: bool,
    pub strategy: FileVersionStrategy,
    pub part_size: u64,
    pub delete_sources: bool,
    pub requests_per_minute: u32,
    pub max_concurrency: u32,
    pub tuning: Tuning,
}

impl Params {
    pub fn new(options: &MigrationOptions, engine: EngineKind, tuning: &Tuning) -> Self {
        Self {
            engine,
            probes_sources: options.copy_mode == CopyMode::Auto,
            strategy: options.file_version_strategy,
            part_size: options.part_size_bytes,
            delete_sources: options.delete_source_file_handles,
            requests_per_minute: options.max_synapse_requests_per_minute,
            max_concurrency: options.max_concurrency,
            tuning: tuning.clone(),
        }
    }

    /// The engine a run's copies are counted with: `auto` takes the direct engine into an
    /// external S3 destination (assuming the deployment may read every source), the Synapse
    /// engine elsewhere and where the destination is each folder's own (unknown here).
    pub fn engine_for(mode: CopyMode, external_s3_destination: Option<bool>) -> EngineKind {
        match (mode, external_s3_destination) {
            (CopyMode::Synapse, _) => EngineKind::Synapse,
            (CopyMode::Direct, _) => EngineKind::Direct,
            (CopyMode::Auto, Some(true)) => EngineKind::Direct,
            (CopyMode::Auto, _) => EngineKind::Synapse,
        }
    }
}

/// What the units counted so far ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Items to copy (file versions and table cells).
    pub files: u64,
    /// Of them, table cells.
    pub cells: u64,
    /// Bytes to copy, each source once.
    pub bytes: u64,
    /// Sources copied (a copy serves every item of its source).
    pub copies: u64,
    /// S3 parts of those copies (1 for a direct CopyObject).
    pub parts: u64,
    pub lead_units: u64,
    pub follower_units: u64,
    /// CopyParts invocations (the big sources' part batches).
    pub part_batches: u64,
    /// Bytes the part batches copy (CopyParts' time).
    pub batch_bytes: u64,
    /// Synapse calls by endpoint.
    pub synapse: BTreeMap<String, u64>,
    /// S3 requests by operation, the copies' and the run's artifacts'.
    pub s3: BTreeMap<String, u64>,
}

impl Tally {
    fn call(&mut self, endpoint: &str, n: u64) {
        if n > 0 {
            *self.synapse.entry(endpoint.to_owned()).or_default() += n;
        }
    }

    fn s3(&mut self, operation: &str, n: u64) {
        if n > 0 {
            *self.s3.entry(operation.to_owned()).or_default() += n;
        }
    }

    /// Counts one unit as Plan hands it over.
    pub fn add(&mut self, planned: &Planned, params: &Params) -> Result<()> {
        match planned {
            Planned::Lead(unit) => {
                self.lead_units += 1;
                self.add_copies(unit, params)?;
            }
            // Its sources were copied by the lead unit: StartCopy finds them COPIED.
            Planned::Follower(_) => self.follower_units += 1,
        }
        let (Planned::Lead(unit) | Planned::Follower(unit)) = planned;
        for item in &unit.items {
            self.add_item(item, params)?;
        }
        Ok(())
    }

    /// The unit's copies: StartCopy reads the sources' handles (100 a call), each source is
    /// copied once, the Synapse engine's Complete reads the new handles back (100 a call).
    fn add_copies(&mut self, unit: &WorkUnit, params: &Params) -> Result<()> {
        let mut sources: BTreeMap<&str, u64> = BTreeMap::new();
        for item in &unit.items {
            sources.insert(&item.source, item.size);
        }
        let reads = (sources.len() as u64).div_ceil(FILE_HANDLE_BATCH as u64);
        self.call(endpoint::HANDLE_BATCH, reads);
        if params.engine == EngineKind::Synapse {
            self.call(endpoint::HANDLE_BATCH, reads);
        }
        for size in sources.into_values() {
            self.add_copy(size, unit.kind, params)?;
        }
        Ok(())
    }

    /// One source's copy, by the run's engine.
    fn add_copy(&mut self, size: u64, kind: UnitKind, params: &Params) -> Result<()> {
        let plan = PartPlan::new(size, params.part_size)?;
        let engine = &params.tuning.engine;
        let single_request = params.engine == EngineKind::Direct
            && size <= engine.copy_object_threshold.min(MAX_COPY_OBJECT_SIZE);
        let parts = if single_request {
            1
        } else {
            u64::from(plan.part_count())
        };
        // A small unit copies its sources in StartCopy; a large one in part batches.
        let batches: Vec<u64> = match kind {
            UnitKind::Large if !single_request => part_batches(&plan, &params.tuning.batch_budget)?
                .iter()
                .map(|b| u64::from(b.last_part - b.first_part + 1))
                .collect(),
            _ => vec![parts],
        };
        if kind == UnitKind::Large {
            self.part_batches += batches.len() as u64;
            self.batch_bytes += size;
        }
        self.copies += 1;
        self.bytes += size;
        self.parts += parts;
        let presign_batch = engine.presign_batch.max(1) as u64;
        match params.engine {
            EngineKind::Synapse => {
                self.call(endpoint::START_COPY, 1);
                let presigns = batches.iter().map(|n| n.div_ceil(presign_batch)).sum();
                self.call(endpoint::PRESIGN, presigns);
                self.call(endpoint::ADD_PART, parts);
                self.call(endpoint::COMPLETE_COPY, 1);
                // Synapse starts and completes the upload; the presigned URLs copy the parts.
                self.s3("CreateMultipartUpload", 1);
                self.s3("UploadPartCopy", parts);
                self.s3("CompleteMultipartUpload", 1);
            }
            EngineKind::Direct => {
                self.call(endpoint::EXTERNAL_HANDLE, 1);
                // The source's at start (and once more to choose, in auto), the copy's at the end.
                self.s3("HeadObject", 2 + u64::from(params.probes_sources));
                if single_request {
                    self.s3("CopyObject", 1);
                } else {
                    self.s3("ListMultipartUploads", 1);
                    self.s3("CreateMultipartUpload", 1);
                    self.s3("UploadPartCopy", parts);
                    self.s3("ListParts", parts.div_ceil(LIST_PARTS_PAGE));
                    self.s3("CompleteMultipartUpload", 1);
                }
            }
        }
        if params.delete_sources {
            self.call(endpoint::DELETE_HANDLE, 1);
        }
        Ok(())
    }

    /// One item: the next run's Index reads it again (it is not settled), Complete points it at
    /// its copy.
    fn add_item(&mut self, item: &UnitItem, params: &Params) -> Result<()> {
        self.files += 1;
        let key: ItemKey = item.key.parse()?;
        if key.cell.is_some() {
            // A table cell: read and rewritten through two asynchronous jobs.
            self.cells += 1;
            for endpoint in [
                endpoint::QUERY_START,
                endpoint::QUERY_GET,
                endpoint::TRANSACTION_START,
                endpoint::TRANSACTION_GET,
            ] {
                self.call(endpoint, 1);
            }
            return Ok(());
        }
        match params.strategy {
            FileVersionStrategy::New => {
                self.call(endpoint::BUNDLE, 1);
                self.call(endpoint::PUT_ENTITY, 1);
            }
            FileVersionStrategy::Latest => {
                self.call(endpoint::BUNDLE, 1);
                self.call(endpoint::SWAP_HANDLE, 1);
            }
            FileVersionStrategy::All => {
                // An entity with a second version has its versions listed once.
                if key.version == 2 {
                    self.call(endpoint::VERSIONS, 1);
                }
                self.call(endpoint::VERSION_BUNDLE, 1);
                self.call(endpoint::SWAP_HANDLE, 1);
            }
        }
        Ok(())
    }

    /// What a run makes once, whatever its size: Init's checks, the folder listings (at least a
    /// page per 50 files), Plan's manifest and Report's CSV, and the Map reading its manifest.
    pub fn add_run(&mut self, one_destination: bool) {
        self.call(endpoint::GET_ENTITY, 1);
        self.call(endpoint::PERMISSIONS, 1);
        self.call(endpoint::STORAGE_LOCATION, u64::from(one_destination));
        let listed = self.files - self.cells;
        self.call(endpoint::CHILDREN, listed.div_ceil(CHILDREN_PAGE).max(1));
        let manifests = 1 + u64::from(self.follower_units > 0);
        self.s3("PutObject", manifests + 1);
        self.s3("GetObject", manifests);
    }
}
