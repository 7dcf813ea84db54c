"""`synthcodec benchmark`: standard benchmarks through lm-evaluation-harness (synthcodec.lmeval)."""

from __future__ import annotations

import click

from synthcodec.errors import UserError


@click.command("benchmark")
@click.argument("model")
@click.option("--tasks", "-t", "tasks", required=True, multiple=True,
              help="lm-eval task or group names, comma-separated (repeatable): mmlu, bbh, drop, "
                   "humaneval, ... or tasks defined under --data-dir.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Only the first N documents of each task (a smoke test, not a score).")
@click.option("--shots", type=click.IntRange(0), default=None,
              help="Few-shot examples per prompt [default: each task's own].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Local task data: task YAMLs under DIR can be named in --tasks (a relative "
                   "data_files path is read from the YAML's folder), and a task whose "
                   "dataset_path exists as DIR/<dataset_path> reads that copy. Nothing is "
                   "downloaded (HF_HUB_OFFLINE=1). Default: the Hugging Face Hub.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Run directory: results.json (lm-eval's), summary.md, summary.json, "
                   "samples_TASK.jsonl.")
@click.option("--allow-code-execution", is_flag=True,
              help="Allow tasks that execute code written by the model (humaneval, mbpp). "
                   "Each program runs in a subprocess with a time limit, with network "
                   "connections refused, in a temporary working directory; still, it is "
                   "untrusted code: use a throwaway machine or container.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
              help="Requests per forward pass (local and hf: models).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if present].")
@click.option("--chat-template", is_flag=True,
              help="Wrap prompts in the model's chat template (lm-eval's "
                   "--apply_chat_template); off by default, as in lm-eval.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for few-shot sampling and the harness's random state.")
@click.option("--verbose", "-v", is_flag=True, help="Show lm-eval's own log lines.")
def command(model: str, tasks: tuple[str, ...], limit: int | None, shots: int | None,
            data_dir: str | None, output: str, allow_code_execution: bool, batch_size: int,
            device: str | None, chat_template: bool, seed: int,
            verbose: bool) -> None:
    """Run standard benchmarks on MODEL with EleutherAI's lm-evaluation-harness.

    MODEL is `local` (the embedded SmolLM2), `gguf:PATH`, `hf:DIR` (a Hugging Face model
    directory or a LoRA adapter from `synthcodec train`), or `NAME@http://HOST:PORT/v1` /
    `openai:NAME` (an OpenAI-compatible server; generation tasks only). Local models run
    in transformers (a GGUF is dequantized), so multiple-choice tasks get exact
    log-likelihoods. Writes lm-eval's results plus a summary table (harness and task
    versions, shots, limits) into -o.

    Tasks that run model-written code (HumanEval, MBPP) are refused unless
    --allow-code-execution is given. Needs: pip install 'synthcodec[eval]' (and 'train'
    for local models).

    Example: synthcodec benchmark local --tasks mmlu_abstract_algebra --limit 20 -o runs/bench
    """
    from synthcodec.lmeval import BenchmarkSettings, parse_tasks, run_benchmark

    if shots is not None and shots > 64:
        raise UserError("--shots: at most 64")
    settings = BenchmarkSettings(
        tasks=parse_tasks(tasks), limit=limit, shots=shots, data_dir=data_dir,
        batch_size=batch_size, device=device,
        chat_template=chat_template, allow_code_execution=allow_code_execution, seed=seed)
    result = run_benchmark(model, settings, output, verbose=verbose)
    click.echo((result.run_dir / "summary.md").read_text(encoding="utf-8").rstrip())
