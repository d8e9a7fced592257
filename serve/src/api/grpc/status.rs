//! Engine errors as gRPC statuses: the one mapping every gRPC service uses.

use tonic::{Code, Status};

use crate::engine::EngineError;

pub fn to_status(e: EngineError) -> Status {
    let code = match &e {
        EngineError::ModelNotFound(_) | EngineError::CollectionNotFound(_) | EngineError::CacheMiss => Code::NotFound,
        EngineError::Conflict(_) => Code::AlreadyExists,
        EngineError::InvalidInput(_) | EngineError::InputTooLong(_) => Code::InvalidArgument,
        EngineError::Overloaded { .. } => Code::ResourceExhausted,
        EngineError::DeadlineExceeded => Code::DeadlineExceeded,
        EngineError::ModelLoading { .. } | EngineError::ShuttingDown => Code::Unavailable,
        EngineError::ModelFailed { .. } | EngineError::Internal(_) => Code::Internal,
    };
    let mut status = Status::new(code, e.to_string());
    if let EngineError::Overloaded { retry_after, .. } = &e
        && let Ok(v) = retry_after.as_millis().to_string().parse()
    {
        status.metadata_mut().insert("retry-after-ms", v);
    }
    status
}
