//! The AWS clients the commands use, from the default configuration chain (so
//! `AWS_ENDPOINT_URL` points every one of them at a local stack).

use aws_config::{BehaviorVersion, SdkConfig};
use synmigrate::state::dynamo::DynamoStore;

use crate::args::S3_FORCE_PATH_STYLE_ENV;

pub(crate) struct Aws {
    config: SdkConfig,
}

impl Aws {
    pub(crate) async fn load() -> Self {
        Self {
            config: aws_config::defaults(BehaviorVersion::latest()).load().await,
        }
    }

    pub(crate) fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.config)
    }

    pub(crate) fn store(&self, table: &str) -> DynamoStore {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.config), table)
    }

    pub(crate) fn s3(&self) -> aws_sdk_s3::Client {
        let path_style = std::env::var(S3_FORCE_PATH_STYLE_ENV)
            .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
        synmigrate::config::s3_client(&self.config, path_style)
    }
}
