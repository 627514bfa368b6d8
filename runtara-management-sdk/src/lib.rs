//! Management SDK of Runtara (filled in by the management issue).
