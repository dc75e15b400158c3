"""`optiq doctor`: how optiq runs on this machine (sandbox confinement, BLAS, CPU plans, cache, default model)."""

HELP = (
    "Show how optiq runs here: the sandbox's confinement, the BLAS library, the CPU execution plans measured "
    "on this machine, the cache folder and the default model."
)


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args) -> int:
    import json

    report = collect()
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


def collect() -> dict:
    """Every line of the report, as plain values."""
    from optiq_runtime.firstrun import model_name
    from optiq_runtime.home import cache_home, models_dir
    from sandbox import SandboxError, confinement
    from sandbox.oslayer import is_confined

    try:
        layers = confinement()
        sandbox = {**layers, "confined": is_confined(layers)}
    except SandboxError as error:
        sandbox = {"error": str(error), "confined": False}
    default_model = models_dir() / model_name(None)
    return {
        "sandbox": sandbox,
        "blas": _blas(),
        "cpu_plan": _cpu_plan(),
        "cache": str(cache_home()),
        "model": {
            "name": default_model.name,
            "path": str(default_model),
            "built": (default_model / "config.json").is_file(),
        },
    }


def _blas() -> dict:
    from optiq_runtime.fastcpu import find_openblas, openblas_active

    library = find_openblas()
    return {"path": str(library) if library else None, "active": openblas_active()}


def _cpu_plan() -> dict:
    from optiq_runtime.cpuplan import describe

    return describe()


def _plan_lines(plan: dict) -> list[str]:
    """The CPU backend's execution plans, one line per measured layer shape (``optiq_runtime.cpuplan``)."""
    lines = [f"cpu plan     {plan['cpu']}, {plan['cores']} cores, backend {plan['backend']}"]
    if plan.get("blas_advice"):
        lines.append(f"  advice     {plan['blas_advice']}")
    kernel = plan["kernel"]
    lines.append(
        f"  kernel     {'quantized matmul for short passes: ' if kernel['available'] else 'MLX kernels only: '}"
        f"{kernel['detail']}"
    )
    if not plan["plans"]:
        lines.append(f"  plans      none measured yet (a model's first load measures its own; {plan['plans_file']})")
    for key, entry in sorted(plan["plans"].items()):
        limited = ", memory-limited" if entry.get("memory_limited") else ""
        lines.append(
            f"  {key}  prefill {entry['prefill']} x{entry['prefill_threads']} threads, "
            f"decode {entry['decode']} x{entry['decode_threads']}{limited}"
            + (f" (kernel {entry['kernel']})" if entry.get("kernel", "").startswith("unavailable") else "")
        )
    return lines


def format_report(report: dict) -> str:
    sandbox, blas, model = report["sandbox"], report["blas"], report["model"]
    if "error" in sandbox:
        lines = [f"sandbox      could not start: {sandbox['error']}"]
    else:
        state = "confined" if sandbox["confined"] else "DEGRADED: Python keeps its language layer; run_shell refuses"
        lines = [f"sandbox      {state}"]
        lines += [
            f"  {layer:<11}{sandbox[layer]}" for layer in ("platform", "filesystem", "network", "syscalls", "user")
        ]
    if blas["path"]:
        lines.append(
            f"blas         {blas['path']} ({'preloaded' if blas['active'] else 'found, not preloaded in this process'})"
        )
    else:
        lines.append("blas         MLX's reference BLAS (no OpenBLAS found)")
    lines += _plan_lines(report["cpu_plan"])
    lines.append(f"cache        {report['cache']}")
    lines.append(
        f"model        {model['name']} ({'built' if model['built'] else 'built on first run'}: {model['path']})"
    )
    return "\n".join(lines)
