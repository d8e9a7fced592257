//! Engine errors as gRPC statuses: the one mapping every gRPC service uses.

use tonic::{Code, Status};

use crate::engine::EngineError;

pub fn to_status(e: EngineError) -> Status {
    let code = match e.cause() {
        EngineError::ModelNotFound(_)
        | EngineError::CollectionNotFound(_)
        | EngineError::ChainNotFound(_)
        | EngineError::ModelUnloaded(_)
        | EngineError::CacheMiss => Code::NotFound,
        EngineError::Unprocessable(_) => Code::FailedPrecondition,
        EngineError::Upstream(_) => Code::Internal,
        EngineError::UpstreamUnavailable(_) => Code::Unavailable,
        EngineError::Conflict(_) => Code::AlreadyExists,
        EngineError::InvalidInput(_) | EngineError::InputTooLong(_) => Code::InvalidArgument,
        EngineError::Overloaded { .. } => Code::ResourceExhausted,
        EngineError::DeadlineExceeded => Code::DeadlineExceeded,
        EngineError::ModelLoading { .. } | EngineError::ShuttingDown => Code::Unavailable,
        EngineError::ModelFailed { .. } | EngineError::Internal(_) | EngineError::InStep { .. } => Code::Internal,
    };
    let mut status = Status::new(code, e.public_message());
    if let EngineError::Overloaded { retry_after, .. } = e.cause()
        && let Ok(v) = retry_after.as_millis().to_string().parse()
    {
        status.metadata_mut().insert("retry-after-ms", v);
    }
    status
}
