"""`synthcodec train`: LoRA fine-tuning of a target model on instruction data."""

from __future__ import annotations

import click

from synthcodec.progress import StepPrinter
from synthcodec.train.sft import DEFAULT_EPOCHS, DEFAULT_LR, summary


@click.command("train")
@click.argument("data", type=click.Path(exists=True))
@click.option("--base", default="local", show_default=True,
              help="The model to fine-tune: 'local' (the embedded SmolLM2-135M-Instruct, "
                   "dequantized from its GGUF), a .gguf file, or a local Hugging Face model "
                   "directory. Nothing is downloaded.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="The adapter directory to write (an earlier adapter there is replaced).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Passes over the data [default: {DEFAULT_EPOCHS}, as AlpaGasus-7B].")
@click.option("--max-steps", type=click.IntRange(1), default=None,
              help="Stop after this many optimizer steps (overrides --epochs).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Peak learning rate [default: {DEFAULT_LR:g}; the papers' 2e-5 is for full "
                   "fine-tuning, LoRA needs ~10x more]. Linear warmup (3%), then linear decay to "
                   "a tenth (CodecLM).")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Rows per optimizer step [default: about 32 steps per epoch, a power of two, "
                   "at most 64 (CodecLM)].")
@click.option("--micro-batch-size", type=click.IntRange(1), default=None,
              help="Rows per forward pass; gradients accumulate up to --batch-size "
                   "[default: 4 on CPU, 8 on CUDA]. Lower it if memory runs out.")
@click.option("--lora-r", type=click.IntRange(1), default=16, show_default=True,
              help="LoRA rank (alpha is twice the rank).")
@click.option("--max-length", type=click.IntRange(16), default=2048, show_default=True,
              help="Longest conversation in tokens; longer ones are cut at the end.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if present].")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
def command(data: str, base: str, output: str, epochs: float | None, max_steps: int | None,
            learning_rate: float | None, batch_size: int | None, micro_batch_size: int | None,
            lora_r: int, max_length: int, seed: int, device: str | None, quiet: bool) -> None:
    """Fine-tune a model on DATA with LoRA; write the adapter to -o.

    DATA is JSONL or JSON with Alpaca rows (instruction, optional input, output) or chat
    rows (messages, OpenAI format; ShareGPT conversations also work). The base model's chat
    template renders each row and the loss covers only the assistant's tokens. Uses CUDA
    when present, else the CPU (fine for the embedded 135M model on a few hundred rows).
    The output directory holds the LoRA adapter, the tokenizer and synthcodec_train.json
    (config, data hash, loss per step). Needs: pip install 'synthcodec[train]'.
    """
    from synthcodec.train.sft import train_lora

    printer = StepPrinter()
    try:
        result = train_lora(
            data, base, output, epochs=epochs, max_steps=max_steps,
            learning_rate=learning_rate, batch_size=batch_size,
            micro_batch_size=micro_batch_size, lora_r=lora_r, lora_alpha=2 * lora_r,
            max_length=max_length, seed=seed, device=device,
            progress=None if quiet else printer, log=None if quiet else printer.note,
        )
    finally:
        printer.close()
    click.echo(summary(result))
