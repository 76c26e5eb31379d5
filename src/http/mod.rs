//! Just enough HTTP/1.1, sans-IO: a bounded request-head parser over the read buffer and
//! the few responses the server writes. Later issues add routes (polling, `/metrics`).

pub mod request;
pub mod response;

pub use request::Request;
pub use response::Reject;
