//! A linear layer whose weight takes no gradient.
//!
//! candle's matmul backward computes the gradient of both operands, whether or not the weight
//! is a variable, and keeps it until the backward pass ends: with LoRA that is a full copy of
//! every frozen projection's gradient (the model's size again) and a third of the backward
//! compute, spent for nothing. This custom op multiplies by `W^T` and backpropagates to the
//! input only. It runs on the CPU; other devices use the plain matmul.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Storage, Tensor};

/// `x W^T` for `x` `(n, in)` with a frozen `W` `(out, in)`.
pub struct FrozenLinear {
    /// The weight, `(out, in)`.
    pub w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-linear needs a contiguous input".into())
        })?;
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.w.t()?)?.contiguous()?;
        let shape = y.shape().clone();
        let (st, _) = y.storage_and_layout();
        match &*st {
            Storage::Cpu(c) => Ok((c.clone(), shape)),
            _ => Err(candle_core::Error::Msg(
                "frozen-linear: weight is not on the CPU".into(),
            )),
        }
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.w)?))
    }
}

/// `x W^T`, with no gradient for `W` where the custom op applies (f32 on the CPU).
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu()
        && w.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && x.rank() == 2
    {
        x.contiguous()?.apply_op1(FrozenLinear { w: w.clone() })
    } else {
        x.matmul(&w.t()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn same_value_and_input_gradient_as_matmul_and_none_for_the_weight() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1.0, (5, 7), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev).unwrap();
        let plain = x.as_tensor().matmul(&w.t().unwrap()).unwrap();
        let frozen = frozen_matmul(x.as_tensor(), &w).unwrap();
        let d = (&plain - &frozen)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        let g_plain = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g_frozen = frozen.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let a = g_plain.get(x.as_tensor()).unwrap();
        let b = g_frozen.get(x.as_tensor()).unwrap();
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
        // The plain matmul also stored a gradient for the weight; the frozen op did not.
        assert_eq!(g_plain.get_ids().count(), g_frozen.get_ids().count() + 1);
    }
}
