//! Encoding (prompt, response) pairs for encoder classifiers (BERT, DeBERTa) as text pairs,
//! the way OpenAssistant-style reward models are trained, and padding them into batches.

use candle_core::{Device, Tensor};

use crate::batching::score_in_batches;
use crate::bert_files::tok_err;
use crate::error::Result;
use crate::input::{RewardInput, Scored, validate};

/// An encoded pair: token ids, token type ids, and whether it was truncated.
pub(crate) type EncodedPair = (Vec<u32>, Vec<u32>, bool);

/// Token ids and type ids of a pair (with the tokenizer's special tokens); when longer than
/// `max_len`, tokens right after the first are dropped, so the first (`[CLS]`) token and the
/// end of the response are kept.
pub(crate) fn encode_pair(
    tokenizer: &tokenizers::Tokenizer,
    input: &RewardInput,
    max_len: usize,
) -> Result<EncodedPair> {
    let enc = tokenizer
        .encode((input.prompt.text(), input.response.clone()), true)
        .map_err(tok_err)?;
    let (mut ids, mut types) = (enc.get_ids().to_vec(), enc.get_type_ids().to_vec());
    let truncated = ids.len() > max_len;
    if truncated {
        let cut = ids.len() - max_len;
        ids.drain(1..1 + cut);
        types.drain(1..1 + cut);
    }
    Ok((ids, types, truncated))
}

/// The rows `batch` of `encoded`, right-padded with id 0: `(ids, type ids, mask)`, each of
/// shape `(rows, longest)`, the mask 1.0 on real tokens and 0.0 on padding.
pub(crate) fn pad_pairs(
    encoded: &[EncodedPair],
    batch: &[usize],
    device: &Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let longest = batch.iter().map(|&i| encoded[i].0.len()).max().unwrap_or(0);
    let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for &i in batch {
        let (e, t, _) = &encoded[i];
        let pad = longest - e.len();
        ids.extend(e.iter().copied().chain(std::iter::repeat_n(0, pad)));
        types.extend(t.iter().copied().chain(std::iter::repeat_n(0, pad)));
        mask.extend(std::iter::repeat_n(1f32, e.len()).chain(std::iter::repeat_n(0f32, pad)));
    }
    let shape = (batch.len(), longest);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(types, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

/// Scores pairs with an encoder classifier: validates, encodes each pair, and runs `forward`
/// (`ids`, `type ids`, `mask` -> one logit per row) on right-padded batches within `budget`
/// padded tokens.
pub(crate) fn score_pairs(
    inputs: &[RewardInput],
    encode: impl Fn(&RewardInput) -> Result<EncodedPair>,
    budget: usize,
    device: &Device,
    mut forward: impl FnMut(&Tensor, &Tensor, &Tensor) -> Result<Vec<f32>>,
) -> Result<Vec<Scored>> {
    validate(inputs)?;
    let encoded: Vec<EncodedPair> = inputs.iter().map(encode).collect::<Result<_>>()?;
    let lengths: Vec<usize> = encoded.iter().map(|e| e.0.len()).collect();
    let truncated: Vec<bool> = encoded.iter().map(|e| e.2).collect();
    score_in_batches(&lengths, &truncated, budget, |batch| {
        let (ids, types, mask) = pad_pairs(&encoded, batch, device)?;
        forward(&ids, &types, &mask)
    })
}
