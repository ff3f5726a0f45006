from nemotron_operator.drift import matches

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
