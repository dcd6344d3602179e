"""Registry tables: models, their versions, the files of each version, aliases and every alias move."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

import mloncall.data.models  # noqa: F401  (model_versions references dataset_versions)
from mloncall.stores.db import Base, NamedEntity


class Model(NamedEntity, Base):
    __tablename__ = "models"

    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", order_by="ModelVersion.version", cascade="all, delete-orphan"
    )
    aliases: Mapped[list[Alias]] = relationship(back_populates="model", cascade="all, delete-orphan")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    artifact_prefix: Mapped[str] = mapped_column(sa.String(512))
    algorithm: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signature: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    gate: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True, default=None)
    dataset_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("dataset_versions.id", ondelete="RESTRICT"), nullable=True
    )
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128))

    model: Mapped[Model] = relationship(back_populates="versions")
    files: Mapped[list[ArtifactFile]] = relationship(
        back_populates="model_version", order_by="ArtifactFile.name", cascade="all, delete-orphan"
    )


class ArtifactFile(Base):
    """One file of a model version with the checksum recorded when it was written: the manifest."""

    __tablename__ = "model_version_files"
    __table_args__ = (sa.UniqueConstraint("model_version_id", "name", name="uq_model_version_files_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(128))
    key: Mapped[str] = mapped_column(sa.String(512))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)

    model_version: Mapped[ModelVersion] = relationship(back_populates="files")


class Alias(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (sa.UniqueConstraint("model_id", "name", name="uq_model_aliases_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id", ondelete="RESTRICT"))
    updated_at: Mapped[dt.datetime]
    updated_by: Mapped[str] = mapped_column(sa.String(128))

    model: Mapped[Model] = relationship(back_populates="aliases")
    model_version: Mapped[ModelVersion] = relationship()


class AliasEvent(Base):
    """Every alias move, kept forever: who pointed which alias from where to where, and why."""

    __tablename__ = "model_alias_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(sa.String(64))
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(sa.String(128))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
