"""Networks as data: pydantic layer specs, a registry of layer builders, shape inference."""
