from conftest import bearer


async def test_me_answers_for_a_bootstrapped_admin_key(client, org):
    response = await client.get("/v1/me", headers=bearer(org.admin_key))
    assert response.status_code == 200
    assert response.json()["data"]["organization"]["id"] == org.id
