//! One file per page (or group of pages), each a thin handler: read the
//! viewer and the request, call the layers below, fill a view struct, render.

pub mod home;
pub mod layout;
