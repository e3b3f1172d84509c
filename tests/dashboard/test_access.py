"""Only active staff reach the dashboard: anonymous users and API-key clients are sent to the login
page, logged-in non-staff get 403. (The live socket's checks are in test_live.py.)"""

import pytest

pytestmark = pytest.mark.django_db

PAGES = ["/dashboard/", "/dashboard/live/", "/dashboard/tenants/acme/", "/dashboard/tenants/acme/usage.csv"]


@pytest.mark.parametrize("url", PAGES)
def test_staff_see_every_page(op_client, acme, url):
    assert op_client.get(url).status_code == 200


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_is_sent_to_the_admin_login(client, acme, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize("url", PAGES)
def test_an_api_key_is_not_an_operator(client, acme_key, url):
    response = client.get(url, headers={"Authorization": f"Bearer {acme_key.plaintext}"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize("url", PAGES)
def test_non_staff_users_are_refused(nonstaff_client, acme, url):
    assert nonstaff_client.get(url).status_code == 403


def test_inactive_staff_are_refused(client, django_user_model, acme):
    user = django_user_model.objects.create_user("gone", password="x", is_staff=True, is_active=False)
    client.force_login(user)
    assert client.get("/dashboard/").status_code in (302, 403)


def test_non_staff_cannot_use_the_admin_either(nonstaff_client):
    response = nonstaff_client.get("/admin/tenants/tenant/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_pages_only_answer_get(op_client, acme):
    assert op_client.post("/dashboard/").status_code == 405
