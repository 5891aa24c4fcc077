"""Great Expectations data contracts for the dataset shards, as code."""

from data_contracts.shard_contract import ContractResult, ShardContractError, validate_shard

__all__ = ["ContractResult", "ShardContractError", "validate_shard"]
