//! Where the local deployment's notifications arrive, so tests and the demo can read them: the
//! stack's topic (as `template.yaml` makes it) with an SQS queue subscribed in place of an
//! e-mail address, and an EventBridge rule matching the run events on the default bus with
//! another queue as its target (moto delivers to both).

use aws_config::SdkConfig;
use serde_json::Value;
use synmigrate::stages::notify::{EVENT_DETAIL_TYPE, EVENT_SOURCE};

use crate::{aws, LocalError, ACCOUNT_ID, EVENT_BUS};

const TOPIC: &str = "synmigrate-notifications";
const MAIL_QUEUE: &str = "synmigrate-notification-mail";
const EVENT_QUEUE: &str = "synmigrate-run-events";
const RULE: &str = "synmigrate-run-finished";

/// The ARN of the topic the state machine publishes to (moto names it from the topic's name).
pub fn topic_arn() -> String {
    format!(
        "arn:aws:sns:{}:{ACCOUNT_ID}:{TOPIC}",
        synmigrate_testkit::REGION
    )
}

/// One message of the topic, as an e-mail subscriber gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub subject: String,
    pub message: String,
}

/// The queues standing in for the subscribers.
#[derive(Debug)]
pub struct Inbox {
    sqs: aws_sdk_sqs::Client,
    mail_queue: String,
    event_queue: String,
}

impl Inbox {
    /// Creates the topic, the queues, the subscription and the rule.
    pub(crate) async fn set_up(sdk: &SdkConfig) -> Result<Self, LocalError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        let events = aws_sdk_eventbridge::Client::new(sdk);
        let topic = sns
            .create_topic()
            .name(TOPIC)
            .send()
            .await
            .map_err(aws("creating the notification topic"))?;
        if topic.topic_arn() != Some(topic_arn().as_str()) {
            return Err(LocalError::Aws(format!(
                "the notification topic is {:?}, not {}",
                topic.topic_arn(),
                topic_arn()
            )));
        }
        let mail_queue = queue(&sqs, MAIL_QUEUE).await?;
        sns.subscribe()
            .topic_arn(topic_arn())
            .protocol("sqs")
            .endpoint(queue_arn(MAIL_QUEUE))
            .send()
            .await
            .map_err(aws("subscribing to the notification topic"))?;
        let event_queue = queue(&sqs, EVENT_QUEUE).await?;
        let pattern = serde_json::json!({
            "source": [EVENT_SOURCE],
            "detail-type": [EVENT_DETAIL_TYPE],
        });
        events
            .put_rule()
            .name(RULE)
            .event_bus_name(EVENT_BUS)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .map_err(aws("creating the run events' rule"))?;
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(queue_arn(EVENT_QUEUE))
            .build()
            .map_err(|e| LocalError::Aws(e.to_string()))?;
        events
            .put_targets()
            .rule(RULE)
            .event_bus_name(EVENT_BUS)
            .targets(target)
            .send()
            .await
            .map_err(aws("targeting the run events' rule"))?;
        Ok(Self {
            sqs,
            mail_queue,
            event_queue,
        })
    }

    /// The events that reached the bus since the last call (their whole EventBridge envelope).
    pub async fn events(&self) -> Result<Vec<Value>, LocalError> {
        self.drain(&self.event_queue).await
    }

    /// The topic's messages since the last call.
    pub async fn mails(&self) -> Result<Vec<Mail>, LocalError> {
        Ok(self
            .drain(&self.mail_queue)
            .await?
            .into_iter()
            .map(|envelope| Mail {
                subject: envelope["Subject"].as_str().unwrap_or_default().to_owned(),
                message: envelope["Message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Every message of `queue` as JSON, deleted once read.
    async fn drain(&self, queue: &str) -> Result<Vec<Value>, LocalError> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(aws("reading a notification queue"))?;
            let messages = received.messages();
            if messages.is_empty() {
                return Ok(bodies);
            }
            for message in messages {
                let body = message.body().unwrap_or_default();
                bodies.push(serde_json::from_str(body).map_err(|e| {
                    LocalError::Aws(format!("a notification is no JSON ({e}): {body}"))
                })?);
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(queue)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(aws("deleting a read notification"))?;
                }
            }
        }
    }
}

/// Creates the queue `name`; its URL.
pub(crate) async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, LocalError> {
    Ok(sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(aws("creating a queue"))?
        .queue_url()
        .unwrap_or_default()
        .to_owned())
}

fn queue_arn(name: &str) -> String {
    format!(
        "arn:aws:sqs:{}:{ACCOUNT_ID}:{name}",
        synmigrate_testkit::REGION
    )
}
