"""Pure vocabulary: numbers, merge tags, routing, action names, settings validation."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mmsgate import errors, models, numbers, routing, settings


class TestNumbers:
    @pytest.mark.parametrize(
        "raw", ["17745550100", "+17745550100", " 447911123456 ", "4915112345678"]
    )
    def test_valid_international_numbers(self, raw: str) -> None:
        """International digits (a leading + tolerated) are valid."""
        assert numbers.normalize_msisdn(raw) == raw.strip().lstrip("+")

    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "12",
            "0017745550100",
            "1774555010",
            "17741550100",
            "17745550100x",
            "1234567890123456",
        ],
    )
    def test_invalid_numbers(self, raw: str) -> None:
        """Too short/long, 00 prefixes, letters and impossible NANP numbers are refused."""
        assert numbers.normalize_msisdn(raw) is None


class TestMergeTags:
    def test_values_replace_tags_case_insensitively(self) -> None:
        """{$name|default} takes the value of a data element whatever its case."""
        assert models.render_merge_tags("Hi {$FirstName|Sir}!", {"firstname": "Ann"}) == "Hi Ann!"

    def test_default_and_missing(self) -> None:
        """Without a value the default is used; without a default the tag disappears."""
        assert models.render_merge_tags("Hi {$first|Sir} {$last}.", {}) == "Hi Sir ."


class TestActions:
    @pytest.mark.parametrize(
        "name", ["sendSavedMMS", "sendsavedmms", " SENDSAVEDMMS ", "send_saved_mms"]
    )
    def test_action_names_match_loosely(self, name: str) -> None:
        """Action names are matched ignoring case, spaces and underscores."""
        assert models.Action.lookup(name) is models.Action.SEND_SAVED_MMS

    def test_unknown_action(self) -> None:
        """An unknown name finds nothing."""
        assert models.Action.lookup("sendSMS") is None


class TestRouting:
    routes = (
        settings.Route(name="att", kind="mm7", url="http://a", operators=(31002,), prefixes=("1",)),
        settings.Route(name="uk", kind="mm7", url="http://b", prefixes=("44", "447")),
        settings.Route(name="rest", kind="mm7", url="http://c", default=True),
    )

    def test_no_routes_means_simulator(self) -> None:
        """With no routes configured everything goes to the simulator."""
        assert routing.route_for((), None, "17745550100") is routing.SIMULATOR

    def test_operator_then_longest_prefix_then_default(self) -> None:
        """Operator ids win, then the longest matching prefix, then the default route."""
        assert routing.route_for(self.routes, 31002, "447911123456").name == "att"  # type: ignore[union-attr]
        assert routing.route_for(self.routes, None, "447911123456").name == "uk"  # type: ignore[union-attr]
        assert routing.route_for(self.routes, None, "4915112345678").name == "rest"  # type: ignore[union-attr]

    def test_nothing_serves_without_default(self) -> None:
        """Without a default route an unmatched destination has no route."""
        assert routing.route_for(self.routes[:2], None, "4915112345678") is None


class TestStoredSlides:
    PART = models.StoredPart(
        kind=models.MediaKind.VIDEO,
        url="https://media.example/v.mp4",
        blob_key="cd" * 32,
        content_type="video/mp4",
        size=99,
        duration_ms=1500,
        codecs=("avc1", "mp4a"),
    )

    def test_a_slide_round_trips_through_its_data(self) -> None:
        """`from_data` reads back exactly the slide `to_data` wrote."""
        slide = models.StoredSlide("Hi", (self.PART,), 4)
        assert models.StoredSlide.from_data(slide.to_data()) == slide
        empty = models.StoredSlide(None, (), None)
        assert models.StoredSlide.from_data(empty.to_data()) == empty

    def test_a_parts_data_is_what_a_template_keeps(self) -> None:
        """A part's data is its fields with the kind's value and the codecs as a list, as
        templates hold their slides."""
        expected = dataclasses.asdict(self.PART) | {"kind": "video", "codecs": ["avc1", "mp4a"]}
        assert self.PART.to_data() == expected

    def test_a_part_kept_without_codecs_has_none(self) -> None:
        """A part stored without a `codecs` key reads back with no codecs."""
        data = self.PART.to_data()
        del data["codecs"]
        assert models.StoredPart.from_data(data) == dataclasses.replace(self.PART, codecs=())


class TestSettings:
    def test_defaults(self) -> None:
        """With nothing configured: loopback:8080, SQLite in ./mmsgate-data, simulator."""
        cfg = settings.load(env={})
        assert (cfg.host, cfg.port) == ("127.0.0.1", 8080)
        assert cfg.db_url.startswith("sqlite+aiosqlite:///")
        assert cfg.db_url.endswith("mmsgate-data/mmsgate.db")
        assert cfg.simulated

    def test_environment_overrides_file(self, tmp_path: Path) -> None:
        """MMSGATE_* variables override the TOML file."""
        path = tmp_path / "c.toml"
        path.write_text('data_dir = "/from/file"\n[media]\nstrict = true\n')
        cfg = settings.load(
            path, {"MMSGATE_DATA_DIR": "/from/env", "MMSGATE_ALLOW_PRIVATE_NETWORKS": "1"}
        )
        assert cfg.data_dir == Path("/from/env")
        assert cfg.media.strict
        assert cfg.media.allow_private_networks

    def test_postgres_url_gets_async_driver(self) -> None:
        """postgresql:// URLs are used through asyncpg."""
        cfg = settings.load(env={"MMSGATE_DATABASE_URL": "postgresql://u@h/db"})
        assert cfg.db_url == "postgresql+asyncpg://u@h/db"

    @pytest.mark.parametrize(
        ("text", "named"),
        [
            ("colour = 1\n", "colour"),
            ("[media]\nstrcit = true\n", "media.strcit"),
            ("[media]\nstrict = 'yes'\n", "media.strict"),
            ("[api]\nmax_body_bytes = 'big'\n", "api.max_body_bytes"),
            ("[[routes]]\nname = 'x'\nkind = 'smtp'\n", "routes[0].kind"),
            ("[[routes]]\nname = 'x'\nkind = 'mm7'\n", "routes[0].url"),
            ("[[routes]]\nname = 'att'\nkind = 'mm7'\nurl = 'http://m/mm7'\n", "routes[0] (att)"),
            (
                "[[routes]]\nname = 'att'\nkind = 'mm7'\nurl = 'http://m/mm7'\n"
                "inbound_username = 'u'\n",
                "routes[0] (att)",
            ),
            (
                "[[routes]]\nname = 'att'\nkind = 'mm7'\nurl = 'http://m/mm7'\n"
                "inbound_ips = ['10.0.0.300/8']\n",
                "routes[0] (att).inbound_ips",
            ),
            ("simulator_inbound_username = 'u'\n", "simulator_inbound_password"),
            ("[[routes]]\nname = 'x'\nprefixes = ['+44']\n", "routes[0].prefixes: '+44'"),
            ("[[routes]]\nname = 'x'\nprefixes = [44]\n", "routes[0].prefixes: 44"),
            ("[[routes]]\nname = 'x'\nmax_mps = 'fast'\n", "routes[0].max_mps"),
            ("this is not toml", "config file"),
            ("[profiles.att]\nbudget = 1\n", "profiles.att.budget"),
            ("[profiles.att]\nbudget_bytes = 'big'\n", "profiles.att.budget_bytes"),
            ("[profiles.att]\nbudget_bytes = 0\n", "profiles.att.budget_bytes"),
            ("[profiles.mine]\nbase = 'nokia'\n", "profiles.mine.base"),
            ("[[routes]]\nname = 'x'\nkind = 'simulator'\nprofile = 'nope'\n", "routes[0].profile"),
            ("worker_concurrency = 0\n", "worker_concurrency"),
            ("worker_lease_seconds = 0\n", "worker_lease_seconds"),
            ("worker_stall_seconds = 0\n", "worker_stall_seconds: must be positive"),
            ("worker_stall_seconds = 'soon'\n", "worker_stall_seconds: expected a number"),
            ("done_jobs_kept_days = -1\n", "done_jobs_kept_days"),
            ("done_jobs_kept_days = 'week'\n", "done_jobs_kept_days"),
            ("[api]\nread_timeout = 0\n", "api.read_timeout"),
            ("[api]\nbody_timeout = -1\n", "api.body_timeout"),
            ("[api]\nmax_connections_per_client = -1\n", "api.max_connections_per_client"),
            ("[api]\nmax_connections_per_client = 'many'\n", "api.max_connections_per_client"),
            (
                "[[sms_routes]]\nname = 'k'\nkind = 'kannel'\nurl = 'http://k/cgi-bin/sendsms'\n",
                "sms_routes[0].password",
            ),
        ],
    )
    def test_bad_config_names_the_key(self, tmp_path: Path, text: str, named: str) -> None:
        """An unknown or mistyped key stops the start with a message naming it."""
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(errors.ConfigError, match=re.escape(named)):
            settings.load(path, {})

    @pytest.mark.parametrize("text", ["data_dir = 5\n", "log_format = 1\n"])
    def test_a_mistyped_top_level_key_is_a_config_error(self, tmp_path: Path, text: str) -> None:
        """A data_dir or log_format that is not a string is refused naming the key, not a
        crash."""
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(errors.ConfigError, match=text.split(" ")[0]):
            settings.load(path, {})

    def test_kannel_receipt_token_is_stable_per_route_and_configurable(self) -> None:
        """A kannel route's dlr-url token is the same each time it is derived, differs from
        route to route and with the password, never contains the password, and `dlr_token`
        replaces it."""
        route = settings.SmsRoute(name="k", kind="kannel", password="pw")
        token = route.receipt_token()
        assert token == dataclasses.replace(route).receipt_token()
        assert len(token) == 32
        assert "pw" not in token
        others = [
            dataclasses.replace(route, name="k2").receipt_token(),
            dataclasses.replace(route, password="pw2").receipt_token(),
        ]
        assert token not in others
        assert others[0] != others[1]
        assert dataclasses.replace(route, dlr_token="mine").receipt_token() == "mine"
        with pytest.raises(ValueError, match="dlr_token"):
            dataclasses.replace(route, password=None).receipt_token()

    def test_profiles_are_changed_and_added_in_the_config_file(self, tmp_path: Path) -> None:
        """`[profiles.NAME]` changes a shipped profile key by key or adds one from a base,
        and a route may then use it; templates are prepared for the profiles in use."""
        path = tmp_path / "c.toml"
        path.write_text(
            "[profiles.att]\nbudget_bytes = 900000\n"
            "[profiles.flip]\nbase = 'legacy'\nbudget_bytes = 100000\n"
            "image_types = ['image/jpeg']\n"
            "[[routes]]\nname = 'f'\nkind = 'simulator'\nprofile = 'flip'\n"
        )
        cfg = settings.load(path, {})
        assert cfg.profiles["att"].budget_bytes == 900_000
        assert cfg.profiles["att"].video_codec == "h264"
        flip = cfg.profiles["flip"]
        assert (flip.name, flip.budget_bytes, flip.image_types) == (
            "flip",
            100_000,
            ("image/jpeg",),
        )
        assert flip.video_codec == "h263"  # from its base
        assert [p.name for p in cfg.profiles_in_use] == ["default", "flip"]

    def test_bad_environment_boolean(self) -> None:
        """A boolean variable with a value that is not a boolean is refused by name."""
        with pytest.raises(errors.ConfigError, match="MMSGATE_ALLOW_PRIVATE_NETWORKS"):
            settings.load(env={"MMSGATE_ALLOW_PRIVATE_NETWORKS": "perhaps"})
