"""The merge methods, registered from one explicit list (imported only when used)."""

from dtmerge.registry import Registry

METHODS = Registry("merge method", {
    "linear": "dtmerge.merge.methods.linear:Linear",
    "task_arithmetic": "dtmerge.merge.methods.linear:TaskArithmetic",
    "ties": "dtmerge.merge.methods.sparse:Ties",
    "dare_linear": "dtmerge.merge.methods.sparse:DareLinear",
    "dare_ties": "dtmerge.merge.methods.sparse:DareTies",
    "fisher": "dtmerge.merge.methods.fisher:Fisher",
    "lora_ab_average": "dtmerge.merge.methods.lora_ab:LoraABAverage",
})


def get_method(name: str):
    """An instance of the merge method registered as `name` (did-you-mean on a typo)."""
    return METHODS.get(name)()
