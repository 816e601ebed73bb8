//! The activity's specs.

use super::*;
use crate::specs::Section;

/// Every section of the activity's specs.
pub fn sections() -> Vec<Section> {
    vec![]
}
