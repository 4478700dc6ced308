# Fixed features of a dataset (all splits): ResNet-50 pooled features or raw pixels; of a registry
# dataset (rule features) or of a folder of images (datasets of kind image_folder).


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


if IMAGE_FOLDERS:

    rule image_folder_features:
        output:
            "results/features/{dataset}/{extractor}.npz",
        params:
            folder=lambda wc: IMAGE_FOLDERS[wc.dataset],
            options=json.dumps(config["features"], sort_keys=True),
        log:
            "logs/features/{dataset}/{extractor}.log",
        wildcard_constraints:
            dataset="|".join(IMAGE_FOLDERS),
        threads: stage_resources("features")["threads"]
        resources:
            mem_mb=stage_resources("features")["mem_mb"],
            runtime=stage_resources("features")["runtime"],
            gpu=stage_resources("features")["gpu"],
        conda:
            "../../environment.yml"
        shell:
            "python -m cce image-features {params.folder:q} {wildcards.extractor} --name {wildcards.dataset}"
            " --require-labels --options {params.options:q} --out {output} > {log} 2>&1"

    ruleorder: image_folder_features > features
