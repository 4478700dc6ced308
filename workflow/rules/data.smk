# Datasets: download (or copy from local_dir) and verify; manifest.json marks completion.


rule data:
    output:
        f"{DATA_ROOT}/{{dataset}}/manifest.json",
    params:
        root=lambda wc, output: str(Path(output[0]).parents[1]),
        args=data_args,
    log:
        "logs/data/{dataset}.log",
    threads: stage_resources("data")["threads"]
    resources:
        mem_mb=stage_resources("data")["mem_mb"],
        runtime=stage_resources("data")["runtime"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce data {wildcards.dataset} --root {params.root:q} {params.args} > {log} 2>&1"
