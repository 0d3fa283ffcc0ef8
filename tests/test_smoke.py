def test_settings_import():
    from django.conf import settings
    assert "submissions" in settings.INSTALLED_APPS
