//! Unit tests of every validation rule and limit (written next).
