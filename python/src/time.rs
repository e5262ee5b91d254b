//! Seconds as Python passes them (`float`) to `Duration` and back.

use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::invalid;

/// `seconds` as a `Duration`; an `InvalidArgumentError` if it is negative,
/// not a number or too large.
pub(crate) fn duration(py: Python<'_>, seconds: f64, what: &'static str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid(py, what))
}

/// An optional wait: `None` or zero is one attempt.
pub(crate) fn wait(py: Python<'_>, seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) => {
            let d = duration(
                py,
                s,
                "wait must be a finite, non-negative number of seconds",
            )?;
            Ok((!d.is_zero()).then_some(d))
        }
    }
}

/// A TTL; zero is refused by the client itself.
pub(crate) fn ttl(py: Python<'_>, seconds: f64) -> PyResult<Duration> {
    duration(
        py,
        seconds,
        "ttl must be a finite, positive number of seconds",
    )
}

/// A duration in seconds for Python.
pub(crate) fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}
