from __future__ import annotations

from pydantic import Field

from genrail_runtime.settings import CommonSettings


class ProjectorSettings(CommonSettings):
    projector_batch_size: int = Field(500, ge=1, le=10_000, description="Events written per transaction "
                                                                        "(rows and checkpoint together)")
