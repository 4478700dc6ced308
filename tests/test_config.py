import copy

import pytest
import yaml

from cce.pipeline.config import ConfigError, load_config, validate_config

VALID = {
    "clustering": {"datasets": ["digits"], "extractor": "pixels", "methods": ["kmeans"], "seeds": 2},
}


def check(config):
    return validate_config(copy.deepcopy(config))


@pytest.mark.parametrize("path", ["config/config.yaml", "config/demo.yaml", "tests/configs/tiny.yaml"])
def test_shipped_configs_are_valid(repo, path):
    config = load_config(repo / path)
    assert config["clustering"]["seeds"] >= 1


def test_defaults_are_filled():
    config = check(VALID)
    assert config["data_root"] == "resources/data"
    assert config["resources"]["clustering"] == {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": 0}
    assert config["clustering"]["method_options"] == {}


def bad(path, value):
    config = copy.deepcopy(VALID)
    node = config
    *parents, last = path
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


@pytest.mark.parametrize(
    "config,expected",
    [
        (bad(["clustering", "methods"], ["kmeans", "nope"]), "'clustering.methods[1]': unknown method 'nope'"),
        (bad(["clustering", "seeds"], -1), "'clustering.seeds': -1 is less than the minimum of 1"),
        (bad(["clustering", "seeds"], "six"), "'clustering.seeds': 'six' is not of type 'integer'"),
        (bad(["clustering", "datasets"], ["imagenet"]), "'clustering.datasets[0]': unknown dataset 'imagenet'"),
        (bad(["clustering", "extractor"], "vgg"), "'clustering.extractor': unknown extractor 'vgg'"),
        (bad(["clustering", "seedz"], 3), "unknown key 'clustering.seedz'"),
        (bad(["datasets", "digits", "local_dir"], "/does/not/exist"),
         "'datasets.digits.local_dir': directory '/does/not/exist' does not exist"),
        (bad(["clustering", "method_options"], {"kmeans": {"n_inits": 3}}),
         "'clustering.method_options.kmeans.n_inits': unknown option of method 'kmeans'"),
        (bad(["resources", "clustering"], {"gpu": -1}), "'resources.clustering.gpu': -1 is less than the minimum of 0"),
        ({"clustering": {"datasets": ["digits"], "methods": ["kmeans"], "seeds": 1}},
         "missing key 'clustering.extractor'"),
        (bad(["lam_study"], {"datasets": ["digits"], "extractor": "pixels", "method": "cce_plus",
                              "baselines": ["kmeans", "cce_plus"], "lams": [1], "lam_scales": ["mean"], "seeds": 1}),
         "'lam_study.baselines': 'cce_plus' is the method whose lam is varied"),
        (bad(["deep"], {"datasets": ["fashion_mnist"], "methods": ["mi_d", "kmeans"], "seeds": 1}),
         "'deep.methods[1]': unknown method 'kmeans'"),
        (bad(["deep"], {"datasets": ["digits"], "methods": ["mi_d"], "seeds": 1}),
         "'deep.datasets[0]': dataset 'digits': no Table 7 network takes images of shape (8, 8, 1)"),
        (bad(["deep"], {"datasets": ["mnist"], "methods": ["mi_d"], "seeds": 1, "training": {"precision": "fp8"}}),
         "'deep.training.precision': 'fp8' is not one of ['float32', 'bf16']"),
        (bad(["deep"], {"datasets": ["mnist"], "methods": ["mi_d"], "seeds": 1, "training": {"device": "tpu"}}),
         "'deep.training.device': 'tpu' does not match"),
        (bad(["deep"], {"datasets": ["mnist"], "methods": ["cce_plus"], "seeds": 1,
                        "method_options": {"cce_plus": {"momentum": 0.9}}}),
         "'deep.method_options.cce_plus.momentum': unknown option of method 'cce_plus'"),
        (bad(["deep"], {"datasets": ["mnist"], "methods": ["cce_plus"], "seeds": 1,
                        "method_options": {"cce_plus": {"solver": "newton"}}}),
         "'deep.method_options.cce_plus': deep method 'cce_plus': option 'solver' must be one of"),
        (bad(["deep"], {"datasets": ["mnist", "stl10"], "methods": ["mi_d"], "seeds": 1,
                        "training": {"batch_size": {"stl10": 160}}}),
         "'deep.training.batch_size': no value for dataset 'mnist'"),
        (bad(["weak"], {"datasets": ["digits"], "methods": ["cce_plus"], "fractions": [0.1], "seeds": 1}),
         "'weak.datasets[0]': dataset 'digits' has no train and test splits"),
        (bad(["weak"], {"datasets": ["mnist"], "methods": ["cce"], "fractions": [0.1], "seeds": 1}),
         "'weak.methods[0]': unknown method 'cce'"),
        (bad(["weak"], {"datasets": ["mnist"], "methods": ["mi_d"], "fractions": [0], "seeds": 1}),
         "'weak.fractions[0]': 0 is less than or equal to the minimum of 0"),
        (bad(["weak"], {"datasets": ["mnist"], "methods": ["mi_d"], "fractions": [0.1], "seeds": 1,
                        "training": {"labelled_batch_size": 0}}),
         "'weak.training.labelled_batch_size': 0 is less than the minimum of 1"),
        (bad(["noisy"], {"datasets": ["cifar10"], "losses": ["shannon", "focal"], "etas": [0.1], "seeds": 1}),
         "'noisy.losses[1]': 'focal' is not one of ['shannon', 'collision', 'gce']"),
        (bad(["noisy"], {"datasets": ["cifar10"], "losses": ["shannon"], "etas": [1.0], "seeds": 1}),
         "'noisy.etas[0]': 1.0 is greater than or equal to the maximum of 1"),
        (bad(["noisy"], {"datasets": ["cifar10"], "losses": ["shannon"], "etas": [0.5], "seeds": 1,
                         "training": {"self_weight": 1}}),
         "'noisy.training': Unevaluated properties are not allowed ('self_weight' was unexpected)"),
    ],
)
def test_bad_config_names_the_key(config, expected):
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert expected in str(err.value)


def test_every_problem_is_reported():
    config = bad(["clustering", "seeds"], 0)
    config["clustering"]["methods"] = ["nope"]
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert "clustering.seeds" in str(err.value) and "unknown method 'nope'" in str(err.value)


def test_empty_and_malformed(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        validate_config({})
    path = tmp_path / "bad.yaml"
    path.write_text("clustering: [a: b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_schema_is_valid_json_schema(repo):
    import jsonschema

    schema = yaml.safe_load((repo / "src/cce/pipeline/schemas/config.schema.yaml").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
