"""The entry point BentoML imports (`bentoml serve serving.app:Dangol`): explicit startup of
the service for the context file named by DANGOL_SERVICE_CONTEXT (`dangol serve` writes it)."""

from serving.service import create_service
from serving.settings import read_context

Dangol = create_service(read_context())
