//! What each model family fixes about its checkpoints, in one table ([`Family::traits`])
//! that the Hugging Face and the GGUF readers both consult.

/// The model families this runtime implements. They share one decoder and differ only in
/// the switches of [`DecoderConfig`](super::DecoderConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2, 3, 3.x, SmolLM and SmolLM2.
    Llama,
    /// Mistral (optionally with a sliding window).
    Mistral,
    /// Qwen2 and Qwen2.5: bias on the q, k and v projections.
    Qwen2,
    /// Qwen3: RMSNorm on q and k per head, no projection bias.
    Qwen3,
    /// Gemma (1): embeddings scaled by sqrt(hidden), RMSNorm weights applied as `1 + w`,
    /// GeGLU (tanh-approximated GELU) MLP, tied embeddings. Released Aligner correctors use it.
    Gemma,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: `silu(gate) * up` (Llama, Mistral, Qwen).
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

/// When a `config.json`'s `sliding_window` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// Never: the family attends to the whole context.
    Never,
    /// Whenever the config sets a width (Mistral).
    Always,
    /// Only with `use_sliding_window: true` (Qwen2, Qwen3).
    WhenEnabled,
}

/// What a family decides about its checkpoints, whichever format they come in. What a
/// checkpoint states for itself (shapes; in GGUF files also biases, q/k norms and tied
/// embeddings, read from the tensors present) is read from the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyTraits {
    /// Hugging Face `model_type`, also the GGUF `general.architecture`.
    pub model_type: &'static str,
    /// Stem of the family's architecture names (`{stem}ForCausalLM`).
    pub architecture_stem: &'static str,
    /// The MLP's gate activation when the config names none.
    pub activation: Activation,
    /// Token embeddings are multiplied by `sqrt(hidden_size)`.
    pub scale_embeddings: bool,
    /// The family's Hugging Face checkpoints store RMSNorm weights as offsets from one
    /// (llama.cpp's converter adds the one, so GGUF files store them plain).
    pub norm_weight_offset: bool,
    /// RMSNorm on queries and keys per head.
    pub qk_norm: bool,
    /// Bias on the (q/k/v, output) projections fixed by the family; `None` when the
    /// config's `attention_bias` decides both.
    pub attention_bias: Option<(bool, bool)>,
    /// Whether the LM head reuses the embedding table when the config does not say.
    pub tie_word_embeddings: bool,
    /// When the config's sliding window applies.
    pub sliding_window: SlidingWindow,
}

const LLAMA: FamilyTraits = FamilyTraits {
    model_type: "llama",
    architecture_stem: "Llama",
    activation: Activation::Silu,
    scale_embeddings: false,
    norm_weight_offset: false,
    qk_norm: false,
    attention_bias: None,
    tie_word_embeddings: false,
    sliding_window: SlidingWindow::Never,
};

const MISTRAL: FamilyTraits = FamilyTraits {
    model_type: "mistral",
    architecture_stem: "Mistral",
    sliding_window: SlidingWindow::Always,
    ..LLAMA
};

const QWEN2: FamilyTraits = FamilyTraits {
    model_type: "qwen2",
    architecture_stem: "Qwen2",
    attention_bias: Some((true, false)),
    sliding_window: SlidingWindow::WhenEnabled,
    ..LLAMA
};

const QWEN3: FamilyTraits = FamilyTraits {
    model_type: "qwen3",
    architecture_stem: "Qwen3",
    qk_norm: true,
    sliding_window: SlidingWindow::WhenEnabled,
    ..LLAMA
};

const GEMMA: FamilyTraits = FamilyTraits {
    model_type: "gemma",
    architecture_stem: "Gemma",
    activation: Activation::GeluTanh,
    scale_embeddings: true,
    norm_weight_offset: true,
    tie_word_embeddings: true,
    ..LLAMA
};

/// `hidden_act` names that transformers runs as the tanh approximation of GELU.
const GELU_TANH_NAMES: [&str; 3] = ["gelu", "gelu_pytorch_tanh", "gelu_new"];

impl Family {
    /// Every family, in declaration order.
    pub const ALL: [Family; 5] = [
        Family::Llama,
        Family::Mistral,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gemma,
    ];

    /// Architectures accepted in `config.json` (`model_type`), for error messages.
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3, gemma (and their *ForCausalLM / *ForSequenceClassification checkpoints)";

    /// Maps a Hugging Face `model_type` or GGUF `general.architecture` to a family.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "smollm" | "smollm2" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            "gemma" => Some(Family::Gemma),
            _ => None,
        }
    }

    /// What this family fixes about its checkpoints.
    pub fn traits(self) -> FamilyTraits {
        match self {
            Family::Llama => LLAMA,
            Family::Mistral => MISTRAL,
            Family::Qwen2 => QWEN2,
            Family::Qwen3 => QWEN3,
            Family::Gemma => GEMMA,
        }
    }

    /// The activation a config's `hidden_act` (or Gemma's `hidden_activation`) names for
    /// this family: the family's own when it names none, `silu` in any family, the GELU
    /// names in GeGLU families; `None` when the name is not supported.
    pub fn activation_named(self, name: Option<&str>) -> Option<Activation> {
        let own = self.traits().activation;
        match name {
            None => Some(own),
            Some("silu") => Some(Activation::Silu),
            Some(a) if own == Activation::GeluTanh && GELU_TANH_NAMES.contains(&a) => {
                Some(Activation::GeluTanh)
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_found_by_its_own_model_type() {
        for family in Family::ALL {
            assert_eq!(Family::from_name(family.traits().model_type), Some(family));
        }
        assert_eq!(Family::from_name("smollm2"), Some(Family::Llama));
        assert_eq!(Family::from_name("phi3"), None);
    }

    #[test]
    fn activation_names_follow_the_family() {
        use Activation::*;
        assert_eq!(Family::Llama.activation_named(None), Some(Silu));
        assert_eq!(Family::Gemma.activation_named(None), Some(GeluTanh));
        assert_eq!(Family::Gemma.activation_named(Some("gelu")), Some(GeluTanh));
        assert_eq!(Family::Gemma.activation_named(Some("silu")), Some(Silu));
        assert_eq!(Family::Qwen2.activation_named(Some("silu")), Some(Silu));
        assert_eq!(Family::Llama.activation_named(Some("gelu_new")), None);
        assert_eq!(Family::Llama.activation_named(Some("relu")), None);
    }
}
