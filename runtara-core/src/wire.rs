//! Conversions between engine records and errors and their wire forms.

use runtara_protocol::{ByteBuf, ErrorCode, WireError, WireSignal, WireSignalType, WireStatus};

use crate::{Error, InstanceRecord, PendingSignal, SignalType};

impl From<SignalType> for WireSignalType {
    fn from(signal: SignalType) -> Self {
        match signal {
            SignalType::Cancel => WireSignalType::Cancel,
            SignalType::Pause => WireSignalType::Pause,
            SignalType::Resume => WireSignalType::Resume,
        }
    }
}

impl From<WireSignalType> for SignalType {
    fn from(signal: WireSignalType) -> Self {
        match signal {
            WireSignalType::Cancel => SignalType::Cancel,
            WireSignalType::Pause => SignalType::Pause,
            WireSignalType::Resume => SignalType::Resume,
        }
    }
}

impl From<PendingSignal> for WireSignal {
    fn from(signal: PendingSignal) -> Self {
        WireSignal {
            signal_id: signal.signal_id,
            signal_type: signal.signal_type.into(),
            created_at_ms: signal.created_at_ms,
        }
    }
}

impl From<WireSignal> for PendingSignal {
    fn from(signal: WireSignal) -> Self {
        PendingSignal {
            signal_id: signal.signal_id,
            signal_type: signal.signal_type.into(),
            created_at_ms: signal.created_at_ms,
        }
    }
}

impl From<InstanceRecord> for WireStatus {
    fn from(record: InstanceRecord) -> Self {
        WireStatus {
            instance_id: record.instance_id,
            status: record.status,
            checkpoint_id: record.checkpoint_id,
            checkpoint_count: record.checkpoint_count,
            output: record.output.map(ByteBuf::from),
            error: record.error,
            started_at_ms: record.started_at_ms,
            finished_at_ms: record.finished_at_ms,
            heartbeat_at_ms: record.heartbeat_at_ms,
            wake_at_ms: record.wake_at_ms,
        }
    }
}

/// The wire form of an engine error. Internal errors keep their whole cause chain in
/// the message.
pub fn to_wire(error: &Error) -> WireError {
    let (code, status, epoch, current) = match error {
        Error::InstanceNotFound { .. } => (ErrorCode::NotFound, None, None, None),
        Error::TenantMismatch { .. } => (ErrorCode::TenantMismatch, None, None, None),
        Error::Terminal { status, .. } => (ErrorCode::Terminal, Some(*status), None, None),
        Error::Fenced { epoch, current, .. } => {
            (ErrorCode::Fenced, None, Some(*epoch), Some(*current))
        }
        Error::NotRunning { status, .. } => (ErrorCode::NotRunning, Some(*status), None, None),
        Error::SignalRejected { status, .. } => {
            (ErrorCode::SignalRejected, Some(*status), None, None)
        }
        Error::InstanceExists { .. } => (ErrorCode::AlreadyExists, None, None, None),
        Error::ImageNotFound { .. } => (ErrorCode::NotFound, None, None, None),
        Error::ImageInUse { .. } => (ErrorCode::InUse, None, None, None),
        Error::InvalidInput { .. } => (ErrorCode::InvalidInput, None, None, None),
        Error::QuotaExceeded { .. } => (ErrorCode::InvalidInput, None, None, None),
        _ => (ErrorCode::Internal, None, None, None),
    };
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    WireError {
        code,
        message,
        status,
        epoch,
        current,
    }
}

/// The engine error a wire error stands for, when it is one (`None` for codes such as
/// `Unauthorized` or `Internal` that have no engine counterpart).
pub fn from_wire(instance_id: &str, error: &WireError) -> Option<Error> {
    let instance_id = instance_id.to_owned();
    let status = || error.status;
    Some(match error.code {
        ErrorCode::NotFound => Error::InstanceNotFound { instance_id },
        ErrorCode::Terminal => Error::Terminal {
            instance_id,
            status: status()?,
        },
        ErrorCode::NotRunning => Error::NotRunning {
            instance_id,
            status: status()?,
        },
        ErrorCode::Fenced => Error::Fenced {
            instance_id,
            epoch: error.epoch?,
            current: error.current?,
        },
        ErrorCode::InvalidInput => Error::InvalidInput {
            what: "request",
            reason: error.message.clone(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstanceStatus;

    #[test]
    fn engine_errors_survive_the_wire() {
        let errors = [
            Error::Fenced {
                instance_id: "i".into(),
                epoch: 1,
                current: 2,
            },
            Error::Terminal {
                instance_id: "i".into(),
                status: InstanceStatus::Completed,
            },
            Error::NotRunning {
                instance_id: "i".into(),
                status: InstanceStatus::Suspended,
            },
            Error::InstanceNotFound {
                instance_id: "i".into(),
            },
        ];
        for error in errors {
            let back = from_wire("i", &to_wire(&error)).unwrap();
            assert_eq!(back.to_string(), error.to_string());
        }
    }
}
