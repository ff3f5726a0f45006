from nemotron_operator.core.drift import matches

RENDERED = {
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {"containers": [{"name": "nim", "env": [{"name": "A", "value": "1"}]}]}
        },
    }
}


def test_server_defaults_do_not_count_as_drift() -> None:
    observed = {
        "metadata": {"resourceVersion": "7"},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "nim",
                            "env": [{"name": "A", "value": "1"}],
                            "imagePullPolicy": "IfNotPresent",
                        }
                    ]
                }
            },
        },
    }
    assert matches(RENDERED, observed)


def test_a_hand_edit_of_a_managed_field_is_drift() -> None:
    observed = {"spec": {"replicas": 5, "template": RENDERED["spec"]["template"]}}
    assert not matches(RENDERED, observed)


def test_an_added_env_entry_in_an_owned_list_is_drift() -> None:
    containers = [
        {"name": "nim", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    ]
    observed = {"spec": {"replicas": 2, "template": {"spec": {"containers": containers}}}}
    assert not matches(RENDERED, observed)


def test_a_deleted_child_is_drift() -> None:
    assert not matches(RENDERED, {})


def test_booleans_and_numbers_are_not_confused() -> None:
    assert not matches({"a": True}, {"a": 1})
    assert not matches({"a": "1"}, {"a": 1})
    assert matches({"a": 1}, {"a": 1})


def test_empty_maps_and_lists_match_fields_the_server_does_not_store() -> None:
    assert matches(
        {"resources": {"requests": {}, "limits": {"a": "1"}}, "env": []},
        {"resources": {"limits": {"a": "1"}}},
    )
    assert not matches({"resources": {"requests": {"cpu": "1"}}}, {"resources": {}})


def test_quantities_match_by_amount_as_the_api_server_stores_them() -> None:
    rendered = {
        "resources": {"limits": {"cpu": 8, "memory": "1024Mi"}, "requests": {"cpu": "0.5"}},
        "volumes": [{"emptyDir": {"medium": "Memory", "sizeLimit": "16384Mi"}}],
    }
    stored = {
        "resources": {"limits": {"cpu": "8", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
        "volumes": [{"emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}],
    }
    assert matches(rendered, stored)
    edited = {**stored, "resources": {**stored["resources"], "requests": {"cpu": "600m"}}}
    assert not matches(rendered, edited)


def test_numbers_outside_quantities_are_compared_as_written() -> None:
    assert not matches({"spec": {"replicas": 2}}, {"spec": {"replicas": "2"}})
    assert matches({"limits": {"cpu": "lots"}}, {"limits": {"cpu": "lots"}})  # not an amount
    assert not matches({"limits": {"cpu": "lots"}}, {"limits": {"cpu": "1"}})


def test_an_empty_env_value_matches_the_entry_stored_without_it() -> None:
    assert matches({"env": [{"name": "A", "value": ""}]}, {"env": [{"name": "A"}]})
    assert not matches({"env": [{"name": "A", "value": "x"}]}, {"env": [{"name": "A"}]})
