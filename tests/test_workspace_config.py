"""The workspace config: defaults, validation messages with file, line and key."""

from __future__ import annotations

import pytest

from builder.errors import ConfigError
from builder.workspace.config import DEMO_CONFIG, load_config, parse_config


def test_demo_config_without_file(tmp_path):
    config = load_config(tmp_path)
    assert config.path is None and config.dataset.sources[0].startswith("toyworld")
    assert config.dissect[0].model == "demo:classifier"
    assert [(a.run, a.layer) for a in config.ablate] == [("classifier", "features.conv5_3")]
    assert parse_config(DEMO_CONFIG) == config


def test_file_is_read(tmp_path):
    (tmp_path / "unitdissect.toml").write_text(
        'name = "mine"\n[[dissect]]\nname = "r18"\nmodel = "torchvision:resnet18"\n'
        'layers = ["layer4"]\nquantile = 0.01\n')
    config = load_config(tmp_path)
    assert config.name == "mine" and config.dissect[0].quantile == 0.01
    assert config.path == tmp_path / "unitdissect.toml"


@pytest.mark.parametrize("text, expected", [
    ('[dataset]\nsources = ["toyworld"]\nmin_frequncy = 3\n',
     "unitdissect.toml:3: unknown key 'dataset.min_frequncy'"),
    ('[[dissect]]\nname = "a"\nmodel = "demo:classifier"\nlayers = "conv5"\n',
     "unitdissect.toml:4: dissect.layers = 'conv5': expected list[str]"),
    ('[[dissect]]\nname = "a"\nmodel = "m"\nlayers = ["x"]\nsplit = "test"\n',
     "unitdissect.toml:5: dissect.split = 'test': expected one of all, train, val"),
    ('[[dissect]]\nname = "a"\nlayers = ["x"]\n', "unitdissect.toml:1: [[dissect]] #1 needs 'model'"),
    ('seed = "zero"\n', "unitdissect.toml:1: seed = 'zero': expected int"),
    ('[dataset\n', "unitdissect.toml: invalid TOML"),
    # sections and keys where the line has to be found another way
    ('name = "x"\n[ablation]\nrun = "a"\n', "unitdissect.toml:2: unknown key 'ablation'"),
    ('dataset = {sources = ["toyworld"], min_frequncy = 3}\n',
     "unitdissect.toml:1: unknown key 'dataset.min_frequncy'"),
    ('seed = 1\ndataset.image_size = "big"\n',
     "unitdissect.toml:2: dataset.image_size = 'big': expected int | None"),
    ('seed = 1\ndissect = "resnet"\n',
     "unitdissect.toml:2: dissect must be tables written [[dissect]]"),
    ('[[dissect]]\nname = "a"\nmodel = "m"\nlayers = ["x"]\nbatch_size = 0\n',
     "unitdissect.toml:5: dissect.batch_size = 0: expected an integer >= 1"),
    ('[[dissect]]\nname = "../a"\nmodel = "m"\nlayers = ["x"]\n',
     "unitdissect.toml:2: dissect.name = '../a': expected a folder name"),
    ('[[dissect]]\nname = "a"\nmodel = "m"\nlayers = ["x"]\n'
     '[[gan]]\nname = "a"\nmodel = "g"\nlayers = ["y"]\n',
     "unitdissect.toml:6: gan.name = 'a': the run name is already used on line 2"),
    # [[ablate]]: a dissected layer of a [[dissect]] run, valid options
    ('[[dissect]]\nname = "a"\nmodel = "m"\nlayers = ["x"]\n'
     '[[ablate]]\nrun = "a"\nlayer = "y"\n',
     "unitdissect.toml:7: ablate.layer = 'y': expected one of the layers of [[dissect]] 'a' (x)"),
    ('[[dissect]]\nname = "a"\nmodel = "m"\nlayers = ["x"]\n'
     '[[ablate]]\nrun = "a"\nlayer = "x"\nstrategy = "fast"\nadversarial = -1\n',
     "unitdissect.toml:8: ablate.strategy = 'fast': expected one of auto, split, graft, full"),
    ('[[dissect]]\nname = "a"\nmodel = "m"\nlayers = ["x"]\n'
     '[[ablate]]\nrun = "a"\nlayer = "x"\nstrategy = "fast"\nadversarial = -1\n',
     "unitdissect.toml:9: ablate.adversarial = -1: expected an integer >= 0"),
    ('[[dissect]]\nname = "a"\nmodel = "m"\nlayers = ["x"]\n'
     '[[ablate]]\nrun = "a"\nlayer = "x"\n[[ablate]]\nrun = "a"\nlayer = "x"\n',
     "unitdissect.toml:10: [[ablate]] run 'a', layer 'x' is given twice"),
])
def test_errors_name_file_line_and_key(text, expected):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "unitdissect.toml")
    assert expected in str(e.value)


def test_all_problems_reported_together():
    with pytest.raises(ConfigError) as e:
        parse_config('seed = "x"\ndevice = "tpu"\n[[ablate]]\nrun = "nope"\nlayer = "l"\n',
                     "w.toml")
    message = str(e.value)
    assert message.startswith("3 problems")
    assert "w.toml:1:" in message and "w.toml:2:" in message and "w.toml:4:" in message


def test_config_defaults_are_the_commands_defaults():
    """[[ablate]] and [[gan]] keys mean what the commands' options mean, defaults included."""
    import dataclasses

    from builder.generator import GanOptions
    from builder.intervene import AblationOptions
    from builder.workspace.config import AblateConfig, GanConfig

    renamed = {"counts": "ablation_counts"}
    for config, options in ((AblateConfig, AblationOptions), (GanConfig, GanOptions)):
        defaults = {f.name: f.default for f in dataclasses.fields(options)}
        for f in dataclasses.fields(config):
            name = renamed.get(f.name, f.name)
            if name in defaults and f.default is not dataclasses.MISSING:
                assert f.default == defaults[name], (config.__name__, f.name)
