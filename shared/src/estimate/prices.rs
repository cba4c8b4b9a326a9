//! us-east-1 list prices the estimate (and `make scale`'s projection) charges at.

/// us-east-1 list prices (x86 Lambda, the dearer architecture: arm64 costs a fifth less), USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// A Standard workflow's state transition.
    pub transition: f64,
    pub gb_second: f64,
    pub lambda_request: f64,
    /// On-demand DynamoDB write and read request units.
    pub write_unit: f64,
    pub read_unit: f64,
    /// S3 PUT, COPY, POST and LIST requests, and GET-class (GET, HEAD, ...) ones.
    pub s3_put_class: f64,
    pub s3_get_class: f64,
}

pub const PRICES: Prices = Prices {
    transition: 0.025 / 1_000.0,
    gb_second: 0.000_016_666_7,
    lambda_request: 0.20 / 1_000_000.0,
    write_unit: 1.25 / 1_000_000.0,
    read_unit: 0.25 / 1_000_000.0,
    s3_put_class: 0.005 / 1_000.0,
    s3_get_class: 0.000_4 / 1_000.0,
};

/// S3 operations billed as PUT, COPY, POST or LIST requests; the rest as GET-class.
pub const S3_PUT_CLASS: [&str; 10] = [
    "PutObject",
    "CopyObject",
    "UploadPart",
    "UploadPartCopy",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    "ListObjects",
    "ListMultipartUploads",
    "ListParts",
    "CreateBucket",
];

/// Whether S3 bills `operation` as a PUT-class request.
pub fn is_put_class(operation: &str) -> bool {
    S3_PUT_CLASS.contains(&operation)
}
