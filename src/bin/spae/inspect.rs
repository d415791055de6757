//! `spae inspect`: the model, the codebook, the vocabulary and the LLM, as text.

use anyhow::Result;

use spae::llm::gguf::LlmFile;

use crate::Session;

pub fn run(session: &Session) -> Result<()> {
    let (model, llm) = (session.model, session.llm);
    let config = model.config();
    let shape = model.shape();
    let codebook = model.codebook();
    let vocabulary = codebook.vocabulary();
    let parameters: usize = model.expected_tensors().values().map(|s| s.iter().product::<usize>()).sum();
    println!("model      {}", model.source());
    println!(
        "           {} x {} px, downsampling {}, latent {} x {} x {}",
        config.resolution,
        config.resolution,
        config.downsampling(),
        shape.latent_size(),
        shape.latent_size(),
        config.latent_channels
    );
    println!(
        "           channels {:?}, {} residual block(s) per level ({} in the decoder), {parameters} parameters",
        config.channels,
        config.res_blocks,
        config.decoder_blocks()
    );
    match &config.semantic_branch {
        Some(branch) => println!(
            "encoder    CNN + semantic branch: the frozen teacher at {} px, projector 1280 -> {} -> {}, layers 1-{}",
            branch.teacher_input, branch.hidden, config.latent_channels, branch.layers
        ),
        None => println!("encoder    CNN alone (no semantic branch)"),
    }
    println!("pyramid    {} layers, cell target {:?}", shape.layers(), config.cell_target);
    for layer in 1..=shape.layers() {
        let s = shape.grid_size(layer);
        println!(
            "           layer {layer}: {s} x {s} = {} tokens ({} cumulative)",
            shape.tokens_in_layer(layer),
            shape.tokens_in_prefix(layer)
        );
    }
    println!("codebook   {} words x {} dims, frozen LLM input embeddings", codebook.len(), codebook.dim());
    let first: Vec<&str> = (0..8).map(|i| vocabulary.word(i)).collect();
    let last: Vec<&str> = (codebook.len() as u32 - 4..codebook.len() as u32).map(|i| vocabulary.word(i)).collect();
    println!("vocabulary {} words, first: {} ... last: {}", vocabulary.rule().name(), first.join(" "), last.join(" "));
    println!("           token ids {} ..= {}", vocabulary.token_id(0), vocabulary.token_id(codebook.len() as u32 - 1));
    let file = LlmFile::open(llm)?;
    let field = |key: &str| file.metadata_string(key).unwrap_or_else(|| "?".to_string());
    println!(
        "LLM        {} ({}, {}, licence {}), {} tokens in its vocabulary",
        file.path().display(),
        field("general.name"),
        field("general.architecture"),
        field("general.license"),
        file.tokens()?.len()
    );
    Ok(())
}
