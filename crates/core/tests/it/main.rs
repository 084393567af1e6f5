//! Checks on the workspace's shape that the compiler alone does not make.

mod layers;
