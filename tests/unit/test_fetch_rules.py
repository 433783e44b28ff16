import pytest

from gateway.fetch import address_refused, url_problem


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.com/a.jpg", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://", "no host"),
        ("http://user:pw@example.com/a.jpg", "credentials"),
        ("http://127.0.0.1/a.jpg", "loopback"),
        ("http://localhost:8080/a.jpg", "loopback"),
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://192.168.0.10/a.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/a.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
        ("http://0.0.0.0/a.jpg", "unspecified"),
        ("https://example.com:99999/a.jpg", "malformed"),
    ],
)
def test_urls_refused_with_a_reason(url: str, message: str) -> None:
    problem = url_problem(url)
    assert problem is not None and message in problem


def test_public_urls_and_names_pass_the_text_check() -> None:
    assert url_problem("https://cdn.example.com/swatches/oak.jpg?v=2") is None
    assert url_problem("http://93.184.216.34/a.jpg") is None


def test_private_urls_pass_when_allowed() -> None:
    assert url_problem("http://127.0.0.1:8000/a.jpg", allow_private=True) is None


def test_address_classification() -> None:
    assert address_refused("8.8.8.8") is None
    assert address_refused("172.16.5.4") == "a private address"
    assert address_refused("fe80::1") == "a link-local address"
