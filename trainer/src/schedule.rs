//! Learning-rate schedules: linear warm-up, then cosine decay or constant.

use serde::{Deserialize, Serialize};

/// Shape of the schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Half-cosine from the peak to zero at the last step.
    Cosine,
    /// The peak rate throughout.
    Constant,
}

/// A warm-up-then-decay schedule over a known number of optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up from `lr / warmup` to `lr`.
    pub warmup_steps: u64,
    /// Total optimiser steps of the run.
    pub total_steps: u64,
    /// Decay after warm-up.
    pub kind: ScheduleKind,
}

impl Schedule {
    /// Learning rate of optimiser step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = Schedule {
            lr: 1.0,
            warmup_steps: 4,
            total_steps: 14,
            kind: ScheduleKind::Cosine,
        };
        assert!((s.lr_at(0) - 0.25).abs() < 1e-12);
        assert!((s.lr_at(3) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(4) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(9) - 0.5).abs() < 1e-12);
        assert!(s.lr_at(14).abs() < 1e-12);
        let c = Schedule {
            kind: ScheduleKind::Constant,
            ..s
        };
        assert_eq!(c.lr_at(13), 1.0);
    }
}
