# 1,000 concurrent logins with a wrong password, one TLS connection each, in rounds (used by
# scripts/login-flood.sh); prints the answers' status counts per round.
import asyncio, ssl, sys, collections
host, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
body = b'{"username": "nobody@example.com", "password": "not the password at all"}'
req = (b"POST /v1/login HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
       b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
async def one():
    try:
        r, w = await asyncio.open_connection(host, port, ssl=ctx)
        w.write(req); await w.drain()
        line = await r.readline()
        w.close()
        return line.split()[1].decode()
    except Exception as e:
        return type(e).__name__
async def main():
    for i in range(rounds):
        got = await asyncio.gather(*[one() for _ in range(1000)])
        print("round", i, dict(collections.Counter(got)), flush=True)
asyncio.run(main())
