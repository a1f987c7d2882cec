//! Reading the API server's answers: which failures mean "already done".

/// Whether `error` is the API server answering with HTTP `code` (409: exists, 404: gone).
pub fn is_code(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// `Ok` for success and for the listed codes: the idempotent outcome of a create (409) or a
/// delete (404).
pub fn tolerate<T>(result: Result<T, kube::Error>, codes: &[u16]) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if codes.iter().any(|c| is_code(&e, *c)) => Ok(()),
        Err(e) => Err(e),
    }
}
