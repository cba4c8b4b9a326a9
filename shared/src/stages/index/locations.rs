//! Where an aligned run's files go: each container's upload location, and whether the user may
//! copy into it.

use std::collections::BTreeMap;

use crate::context::{RunContext, Services};
use crate::stages::init::writable_destination;
use crate::state::FolderRecord;
use crate::Result;

/// The upload locations an aligned walk met in this invocation, and whether files can be
/// copied into each (`Some(why)` when not), so that each is asked about once.
#[derive(Default)]
pub(super) struct Locations(BTreeMap<i64, Option<String>>);

impl Locations {
    /// The record of a folder (or the project) whose listing starts: where its files go
    /// (`GET /entity/{id}/uploadDestination`), and whether they can be copied there.
    pub(super) async fn folder(
        &mut self,
        services: &Services,
        run: &RunContext,
        folder_id: &str,
    ) -> Result<FolderRecord> {
        let location = services
            .synapse
            .upload_destination(folder_id)
            .await?
            .storage_location_id;
        let not_writable = match self.0.get(&location) {
            Some(known) => known.clone(),
            None => {
                let why = match writable_destination(services, location, &run.options).await {
                    Ok(_) => None,
                    Err(error) if !error.is_retryable() => Some(error.to_string()),
                    Err(error) => return Err(error),
                };
                self.0.insert(location, why.clone());
                why
            }
        };
        Ok(FolderRecord {
            folder_id: folder_id.to_owned(),
            destination_storage_location_id: location,
            not_writable,
            ..FolderRecord::default()
        })
    }
}
