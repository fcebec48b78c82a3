//! Integration tests of `baton-client`: the client driven through a fake
//! [`baton_client::Transport`] with no sockets, and through the default reqwest transport against
//! a canned HTTP/1.1 server on a loopback socket; failing over between several servers through
//! both.

mod failover;
mod failover_sockets;
mod reqwest_transport;
mod transport;
