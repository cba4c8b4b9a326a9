use super::*;

#[test]
fn expressions_use_placeholders_for_every_name() {
    let mut expr = Expr::default();
    expr.set("status", s("INDEXED"))
        .set_if_absent("attempts", n(0))
        .remove("leaseOwner")
        .add("count_MIGRATED", n(2));
    assert_eq!(
        expr.update_expression(),
        "SET #status = :status, #attempts = if_not_exists(#attempts, :attempts) \
         REMOVE #leaseOwner ADD #count_MIGRATED :count_MIGRATED"
    );
    let (names, values) = expr.into_maps();
    assert_eq!(names.unwrap()["#status"], "status");
    assert_eq!(values.unwrap()[":count_MIGRATED"], n(2));
    assert_eq!(Expr::default().into_maps(), (None, None));
}

#[test]
fn service_errors_are_classified_by_code() {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;

    let with_code = |code: &str| {
        let error = PutItemError::generic(ErrorMetadata::builder().code(code).build());
        classify("PutItem", SdkError::<_, ()>::service_error(error, ()))
    };
    for code in [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    ] {
        match with_code(code) {
            Failure::Error(error @ StateError::Throttled(_)) => {
                assert_eq!(error.error_type(), crate::error::types::THROTTLED);
            }
            _ => panic!("{code} should be throttling"),
        }
    }
    assert!(matches!(
        with_code("ConditionalCheckFailedException"),
        Failure::ConditionFailed
    ));
    assert!(matches!(
        with_code("InternalServerError"),
        Failure::Error(StateError::Transient(_))
    ));
    assert!(matches!(
        with_code("ResourceNotFoundException"),
        Failure::Error(StateError::Service(_))
    ));
    let timeout = SdkError::<PutItemError, ()>::timeout_error("no answer");
    assert!(matches!(
        classify("PutItem", timeout),
        Failure::Error(StateError::Transient(_))
    ));
}

#[test]
fn page_tokens_round_trip() {
    let key: Attrs = [
        (PK, "MIG#syn1#2"),
        (SK, "ITEM#syn3#1"),
        (SPK, "MIG#syn1#2#INDEXED"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), s(v)))
    .collect();
    assert_eq!(decode_token(&encode_token(&key).unwrap()).unwrap(), key);
    assert!(matches!(decode_token("nope"), Err(StateError::Invalid(_))));
}

#[test]
fn corrupt_records_name_the_record_and_attribute() {
    let attrs: Attrs = [
        (PK.to_owned(), s("MIG#syn1#2")),
        (SK.to_owned(), s("ITEM#syn3#1")),
        ("status".to_owned(), s("LOST")),
    ]
    .into_iter()
    .collect();
    match parse_item(&attrs) {
        Err(StateError::Corrupt { record, detail }) => {
            assert_eq!(record, "MIG#syn1#2 ITEM#syn3#1");
            assert!(detail.contains("status"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
