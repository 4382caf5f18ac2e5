//! A node of the emulated cluster and its two addresses: the internal one
//! (`127.0.n.1`) and the external one (`127.0.n.2`). Its host names are
//! [`super::naming`]'s.

use std::net::Ipv4Addr;

/// The addresses of one emulated node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// 1-based index.
    pub index: usize,
}

impl Node {
    /// `127.0.n.1`.
    pub fn internal_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.index as u8, 1)
    }

    /// `127.0.n.2`.
    pub fn external_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.index as u8, 2)
    }
}
