"""Orpheus for beets: genre, mood and tag probabilities from a local model, in the library and the files.

Enable it in beets' config.yaml (`beet config -e`):

    plugins: orpheus
    orpheus:
        model: MSD_musicnn     # a pretrained model, or run_dir: /path/to/run (a model trained with Orpheus)
        top: 5                 # tags kept in orpheus_tags (or threshold: 0.3)
        genre: yes             # fill an empty genre with the most probable selected genre tag
        mood: yes              # fill an empty mood with the most probable selected mood tag
        auto: no               # tag on `beet import`

Then `beet orpheus [QUERY]`, and queries such as `beet ls orpheus_jazz:0.5..` or `beet ls orpheus_tags:jazz`.

What each item gets:
    orpheus_<tag>   every tag's probability, a float field (`orpheus_hard_rock` for "hard rock")
    orpheus_tags    the selected tags, most probable first, joined by "; " (written to files as ORPHEUS_TAGS,
                    the same field `orpheus predict --write-tags` writes)
    orpheus_model   the model's name, the digest of its files and the selection (ORPHEUS_MODEL in files);
                    an item with the same value is skipped unless --force
    genres / mood   with `genre` / `mood`: only where empty, unless `overwrite: yes`; mood is registered
                    with MediaFile (ID3 TMOO, Vorbis MOOD, MP4 ----:com.apple.iTunes:MOOD), so `beet write`
                    puts it into the files

Files are written by beets itself (`item.try_write`, honouring `import.write` and `id3v23`), like every beets
plugin. Loading beets imports nothing heavy from here: the model (and numpy, OpenVINO or TensorFlow) is
loaded on the first item to tag, once per command. A file that cannot be tagged is logged and skipped.
"""

from __future__ import annotations

import json
import os
import re
from functools import cached_property

import mediafile
from beets import library, ui
from beets.dbcore import types
from beets.plugins import BeetsPlugin

FIELD_PREFIX = "orpheus_"
TAGS_FIELD = "orpheus_tags"
MODEL_FIELD = "orpheus_model"
PRETRAINED_TAG_FILES = ("msd_musicnn_tags.txt", "mtt_musicnn_tags.txt")  # every pretrained model's tags


def tag_field(tag: str) -> str:
    """The item field of a tag's probability: `orpheus_` + the tag in lower case, other characters as `_`."""
    return FIELD_PREFIX + (re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_") or "tag")


def text_field(name: str) -> mediafile.MediaField:
    """A one-value text field in every tag format (ID3 TXXX:NAME, Vorbis NAME, MP4 and ASF freeform)."""
    return mediafile.MediaField(mediafile.MP3DescStorageStyle(name),
                                mediafile.MP4StorageStyle(f"----:com.apple.iTunes:{name}"),
                                mediafile.StorageStyle(name), mediafile.ASFStorageStyle(f"orpheus/{name}"))


MOOD_FIELD = mediafile.MediaField(mediafile.MP3StorageStyle("TMOO"), mediafile.MP4StorageStyle(
    "----:com.apple.iTunes:MOOD"), mediafile.StorageStyle("MOOD"), mediafile.ASFStorageStyle("WM/Mood"))


def vocabulary() -> dict[str, set[str]]:
    """{"genre": tags, "mood": tags} (lower case) from Orpheus's package data."""
    from orpheus.data import data_file
    data = json.loads(data_file("genre_mood_tags.json").read_text(encoding="utf-8"))
    return {kind: {t.lower() for t in data[kind]} for kind in ("genre", "mood")}


def first_of(tags, names: set[str]) -> str | None:
    """The first of `tags` (most probable first) whose lower-case form is in `names`."""
    return next((t for t in tags if t.lower() in names), None)


class OrpheusPlugin(BeetsPlugin):
    def __init__(self) -> None:
        super().__init__()
        self.config.add({"auto": False, "model": "MSD_musicnn", "run_dir": None, "top": 5, "threshold": None,
                         "precision": "exact", "genre": False, "mood": False, "overwrite": False, "jobs": 1,
                         "genre_tags": [], "mood_tags": []})
        for name, field in ((TAGS_FIELD, text_field("ORPHEUS_TAGS")), (MODEL_FIELD, text_field("ORPHEUS_MODEL")),
                            ("mood", MOOD_FIELD)):
            if name not in mediafile.MediaFile.__dict__:  # another plugin (or an earlier load) may have it
                self.add_media_field(name, field)
            # `beet write` (without -f) compares only the fields in this set, which add_media_field leaves alone:
            # without this, a changed orpheus_tags or mood would never reach the files through `beet write`
            getattr(library.Item, "_media_tag_fields", set()).add(name)
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
            self.register_listener("import_task_files", self.write_imported)
        self._tagger = None
        self._tagged_on_import: dict[int, list] = {}  # import task id -> items tagged, written after the copy

    @cached_property
    def item_types(self) -> dict[str, types.Type]:
        """A float type for the probability field of every tag of the pretrained models and the configured
        run, so `beet ls orpheus_jazz:0.5..` is a numeric range query."""
        return {tag_field(t): types.NullFloat(3) for t in self._known_tags()}

    def _known_tags(self) -> list[str]:
        from orpheus.data import data_file
        tags = [line.strip() for name in PRETRAINED_TAG_FILES
                for line in data_file(name).read_text(encoding="utf-8").splitlines() if line.strip()]
        run_dir = self.config["run_dir"].get()
        if run_dir:
            try:
                from orpheus.formats.rundir import read_run_info
                tags += list(read_run_info(run_dir).tags)
            except Exception as err:  # a broken config must not stop beets from starting
                self._log.warning("cannot read the tags of run_dir {}: {}", run_dir, err)
        return tags

    # ---------------------------------------------------------------- the command

    def commands(self):
        command = ui.Subcommand("orpheus", help="tag items with an Orpheus model (genre, mood, tag probabilities)")
        parser = command.parser
        parser.usage = "%prog [options] [QUERY]"
        parser.epilog = ("Example: beet orpheus -f --top 10 --dry-run artist:Nick (what a new selection would set "
                         "on those items). Then: beet ls orpheus_jazz:0.5.. ; beet ls orpheus_tags:jazz")
        parser.add_option("-m", "--model", help="pretrained model (MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg)")
        parser.add_option("--run-dir", help="a model trained with Orpheus (a run folder) instead of --model")
        parser.add_option("--top", type="int", help="keep the N most probable tags in orpheus_tags")
        parser.add_option("--threshold", type="float", help="keep the tags with probability >= this instead")
        parser.add_option("--precision", choices=("exact", "fast"), help="exact (float32) or fast (bf16 where "
                          "the CPU has it)")
        parser.add_option("-f", "--force", action="store_true", default=False,
                          help="tag items already tagged by this model and selection again")
        parser.add_option("-w", "--write", action="store_true", default=None, help="write tags to the files")
        parser.add_option("-W", "--no-write", action="store_false", dest="write", help="do not write tags")
        parser.add_option("--dry-run", action="store_true", default=False,
                          help="show what would change; change nothing")
        command.func = self.command
        return [command]

    def command(self, lib, opts, args) -> None:
        settings = self._settings(opts)
        write = ui.should_write(opts.write) and not opts.dry_run
        label = self._label(settings)
        wanted, skipped = [], 0
        for item in lib.items(args):  # kept as (id, path): a large library's items are not all held in memory
            if not opts.force and self._is_done(item, label):
                skipped += 1
            else:
                wanted.append((item.id, _text_path(item.path)))
        if skipped:
            self._log.info("{} items already tagged by this model and selection (--force to redo)", skipped)
        if not wanted:
            return
        tagger = self._load(settings)
        results = tagger.core.tag_files([path for _, path in wanted], jobs=settings["jobs"], quiet=False)
        for (item_id, _), result in zip(wanted, results):
            item = lib.get_item(item_id)
            if item is None:
                continue  # removed from the library meanwhile
            changes = self._apply(item, tagger, result, label, settings)
            if changes is None:
                continue
            if opts.dry_run:
                ui.print_(f"{item}: would set {changes}")
            else:
                item.try_sync(write, move=False)

    # ---------------------------------------------------------------- the import stage

    def imported(self, session, task) -> None:
        """Tag the items of an import task (config `auto: yes`); beets writes them as its config says."""
        settings = self._settings(None)
        label = self._label(settings)
        items = [item for item in task.imported_items() if not self._is_done(item, label)]
        if not items:
            return
        tagger = self._load(settings)
        results = tagger.core.tag_files([_text_path(item.path) for item in items], jobs=settings["jobs"],
                                        quiet=True)
        tagged = []
        for item, result in zip(items, results):
            if self._apply(item, tagger, result, label, settings) is not None:
                item.store()
                tagged.append(item)
        self._tagged_on_import[id(task)] = tagged

    def write_imported(self, session, task) -> None:
        """After beets has copied or moved an import's files: write the fields into them (with `import.write`).
        beets itself writes only what an autotagger match changed, so an as-is import (`-A`) would not; and
        the stage above runs before the copy, when writing would change the user's original."""
        tagged = self._tagged_on_import.pop(id(task), [])
        if ui.should_write() and not getattr(task, "apply", False):
            for item in tagged:
                item.try_write()
                item.store()  # the file's new mtime

    # ---------------------------------------------------------------- shared

    def _settings(self, opts) -> dict:
        """The model and selection: command-line options over the config."""
        def option(name):
            return getattr(opts, name, None) if opts is not None else None
        if option("top") is not None and option("threshold") is not None:
            raise ui.UserError("orpheus: give --top or --threshold, not both")
        if option("model") is not None:
            model, run_dir = option("model"), None
        elif option("run_dir") is not None:
            model, run_dir = None, option("run_dir")
        else:
            run_dir = self.config["run_dir"].get()
            model = None if run_dir else self.config["model"].as_str()
        top, threshold = option("top"), option("threshold")
        if top is None and threshold is None:
            threshold = self.config["threshold"].get()
            top = None if threshold is not None else self.config["top"].get(int)
        vocab = vocabulary()
        return {"run_dir": run_dir, "model": model, "top": top, "threshold": threshold,
                "precision": option("precision") or self.config["precision"].as_str(),
                "jobs": self.config["jobs"].get(int), "genre": self.config["genre"].get(bool),
                "mood": self.config["mood"].get(bool), "overwrite": self.config["overwrite"].get(bool),
                "genre_tags": {t.lower() for t in self.config["genre_tags"].as_str_seq()} or vocab["genre"],
                "mood_tags": {t.lower() for t in self.config["mood_tags"].as_str_seq()} or vocab["mood"]}

    def _label(self, settings: dict) -> str:
        """The orpheus_model value, as `predict --write-tags` writes ORPHEUS_MODEL: the model's name and the
        digest of its files, then the selection. Hashes the model's files; loads no model."""
        from orpheus.api import model_identity, resolve_model
        from orpheus.errors import OrpheusError
        from orpheus.tagging.library import LibraryOptions
        try:
            run_dir, name = resolve_model(settings["model"], settings["run_dir"])
            identity = model_identity(run_dir, name)
        except (OrpheusError, OSError) as err:
            raise ui.UserError(f"orpheus: {err}") from err
        extra = {"precision": settings["precision"]} if settings["precision"] != "exact" else {}
        selection = LibraryOptions(threshold=settings["threshold"], top=settings["top"], settings=extra)
        return f"{identity.label}; {selection.selection_label()}"

    def _load(self, settings: dict):
        """The model, loaded once per command (and kept for the rest of an import)."""
        key = (settings["run_dir"], settings["model"], settings["precision"])
        if self._tagger is None or self._tagger[0] != key:
            from orpheus.api import Tagger
            from orpheus.errors import OrpheusError
            try:
                tagger = Tagger(settings["model"], run_dir=settings["run_dir"], precision=settings["precision"],
                                jobs=settings["jobs"])
            except OrpheusError as err:
                raise ui.UserError(f"orpheus: {err}") from err
            self._tagger = (key, tagger)
        return self._tagger[1]

    @staticmethod
    def _is_done(item, label: str) -> bool:
        """Tagged by this model and selection: the same orpheus_model, and its probabilities are there."""
        return item.get(MODEL_FIELD) == label and any(
            key.startswith(FIELD_PREFIX) and key not in (TAGS_FIELD, MODEL_FIELD) for key in item.keys())

    def _apply(self, item, tagger, result, label: str, settings: dict) -> str | None:
        """Set the item's fields from one result; a description of the changes, or None when it failed."""
        from orpheus.tagging.file_tags.writer import join_tags
        from orpheus.tagging.outputs import ranked_tags
        for warning in result.warnings:
            self._log.warning("{}: {}", item.filepath, warning)
        if result.error is not None:
            self._log.warning("{}: not tagged: {}", item.filepath, result.error)
            return None
        for tag, probability in zip(tagger.tag_names, result.scores):
            item[tag_field(tag)] = round(float(probability), 4)
        selected = [t for t, _ in ranked_tags(tagger.tag_names, result.scores, threshold=settings["threshold"],
                                              top=settings["top"])]
        changes = [f"{TAGS_FIELD} {join_tags(selected)!r}"]
        item[TAGS_FIELD] = join_tags(selected)
        item[MODEL_FIELD] = label
        genre_field = "genres" if "genres" in type(item)._fields else "genre"  # beets < 2.14: one genre string
        genre = first_of(selected, settings["genre_tags"]) if settings["genre"] else None
        if genre is not None and (settings["overwrite"] or not item.get(genre_field)):
            item[genre_field] = [genre] if genre_field == "genres" else genre
            changes.append(f"{genre_field} {item[genre_field]!r}")
        mood = first_of(selected, settings["mood_tags"]) if settings["mood"] else None
        if mood is not None and (settings["overwrite"] or not item.get("mood")):
            item["mood"] = mood
            changes.append(f"mood {mood!r}")
        self._log.info("{}: {}", item, ", ".join(changes))
        return ", ".join(changes)


def _text_path(path: bytes | str) -> str:
    """An item's path (bytes in beets) as the str Orpheus opens."""
    return os.fsdecode(path)
