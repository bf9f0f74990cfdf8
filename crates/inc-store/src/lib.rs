//! inc-store: the rendezvous key-value store (in-memory and PyTorch-TCPStore-compatible TCP),
//! `store_all_gather`, and the versioned handshake messages of inc-comm's rendezvous.
