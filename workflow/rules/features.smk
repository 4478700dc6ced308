# Fixed features of a dataset (all splits): ResNet-50 pooled features or raw pixels.


rule features:
    input:
        lambda wc: manifest_path(wc.dataset),
    output:
        "results/features/{dataset}/{extractor}.npz",
    params:
        root=lambda wc, input: str(Path(input[0]).parents[1]),
        options=json.dumps(config["features"], sort_keys=True),
    log:
        "logs/features/{dataset}/{extractor}.log",
    threads: stage_resources("features")["threads"]
    resources:
        mem_mb=stage_resources("features")["mem_mb"],
        runtime=stage_resources("features")["runtime"],
        gpu=stage_resources("features")["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce features {wildcards.dataset} {wildcards.extractor} --root {params.root:q}"
        " --options {params.options:q} --out {output} > {log} 2>&1"
