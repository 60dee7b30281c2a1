"""The configurations of the search space that are never benchmarked, each with the reason."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from vllm_mobo.search.plan import platform_for, valid_and_skipped

platform = platform_for(snakemake.config)
space, valid, skipped = valid_and_skipped(snakemake.config, platform)
skipped.to_csv(snakemake.output[0], index=False)
print(f"{len(space)} configurations, {len(valid)} valid, {len(skipped)} skipped on {platform}", file=sys.stderr)
