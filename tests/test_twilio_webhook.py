"""The voice webhook answers with TwiML; with an auth token, unsigned requests are refused."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from phonepatch.shared.config import Secret

TOKEN = "twilio-auth-token-test"
PUBLIC = "https://phone.example.net"
CALL = {"CallSid": "CA" + "5" * 32, "From": "+15551230000", "To": "+15550001111", "CallStatus": "ringing"}


@pytest.fixture
async def signed_server(start_server, settings):
    twilio = dataclasses.replace(settings.twilio, auth_token=Secret(TOKEN), public_url=PUBLIC)
    return await start_server(dataclasses.replace(settings, twilio=twilio))


def sign(url: str, params: dict[str, str]) -> str:
    return RequestValidator(TOKEN).compute_signature(url, params)


class TestVoiceWebhook:
    async def test_twiml_connects_a_stream(self, server):
        async with server.http.post(server.base_url + "/twilio/voice", data=CALL) as response:
            assert response.status == 200
            assert response.content_type == "text/xml"
            body = await response.text()
        assert "<Connect><Stream url=\"wss://127.0.0.1:" in body and "/twilio\"" in body
        assert "<Say>Goodbye.</Say>" in body  # the prompt itself is spoken through the stream

    async def test_signed_request_is_answered(self, signed_server):
        url = PUBLIC + "/twilio/voice?tenant=a%20b"
        headers = {"X-Twilio-Signature": sign(url, CALL)}
        async with signed_server.http.post(signed_server.base_url + "/twilio/voice?tenant=a%20b", data=CALL, headers=headers) as response:
            assert response.status == 200
            assert 'url="wss://phone.example.net/twilio"' in await response.text()

    @pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
    async def test_unsigned_or_forged_request_is_refused(self, signed_server, signature):
        headers = {} if signature is None else {"X-Twilio-Signature": signature}
        async with signed_server.http.post(signed_server.base_url + "/twilio/voice", data=CALL, headers=headers) as response:
            assert response.status == 403

    async def test_a_changed_field_breaks_the_signature(self, signed_server):
        headers = {"X-Twilio-Signature": sign(PUBLIC + "/twilio/voice", CALL)}
        tampered = {**CALL, "To": "+15559999999"}
        async with signed_server.http.post(signed_server.base_url + "/twilio/voice", data=tampered, headers=headers) as response:
            assert response.status == 403


class TestStreamUpgrade:
    async def test_unsigned_upgrade_is_refused(self, signed_server):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await signed_server.http.ws_connect(signed_server.base_url + "/twilio")
        assert refused.value.status == 403

    async def test_signed_upgrade_is_served(self, signed_server):
        headers = {"x-twilio-signature": sign("wss://phone.example.net/twilio", {})}
        ws = await signed_server.http.ws_connect(signed_server.base_url + "/twilio", headers=headers)
        signed_server.clients.append(ws)
        assert not ws.closed
