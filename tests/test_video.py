"""Kinesis Video Streams through boto3 and ffmpeg: the control plane,
PutMedia with acknowledgements while the upload is open, fragments listed
and played back frame-identically, bad input refused with Kinesis Video's
error codes, and persisted fragments surviving SIGKILL."""

import subprocess
import time

import boto3
import pytest
from botocore.config import Config as BotoConfig

from harness import error_code, wait_until
from video_media import clusters, frame_count, framemd5, make_mkv, signed_headers, upload, with_timecode

# GetMedia ends this long after the newest fragment, so reads of a finished
# upload end soon.
SHORT_IDLE = "video:\n  session_idle_secs: 2\n"

AUTH = SHORT_IDLE + """auth:
  access_keys:
    - access_key_id: AKIDVIDEO
      secret_access_key: video-secret
"""


def client(h, service, key=("test", "test")):
    return boto3.client(service, endpoint_url=h.url, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_mkv(tmp_path_factory.mktemp("video") / "source.mkv")


def test_control_plane_through_boto3(hydrant_factory):
    h = hydrant_factory("").start()
    kv = client(h, "kinesisvideo")
    arn = kv.create_stream(StreamName="cam-1", DataRetentionInHours=24, MediaType="video/h264",
                           DeviceName="door", Tags={"site": "oslo"})["StreamARN"]
    assert arn.startswith("arn:aws:kinesisvideo:us-east-1:") and "/cam-1/" in arn
    for n in ("cam-2", "other"):
        kv.create_stream(StreamName=n)
    info = kv.describe_stream(StreamName="cam-1")["StreamInfo"]
    assert (info["Status"], info["DataRetentionInHours"], info["MediaType"], info["DeviceName"]) == \
        ("ACTIVE", 24, "video/h264", "door")
    assert kv.describe_stream(StreamARN=arn)["StreamInfo"]["StreamName"] == "cam-1"
    names = [s["StreamName"] for s in kv.list_streams(
        StreamNameCondition={"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": "cam"})["StreamInfoList"]]
    assert names == ["cam-1", "cam-2"]
    page = kv.list_streams(MaxResults=2)
    rest = kv.list_streams(MaxResults=2, NextToken=page["NextToken"])
    assert [s["StreamName"] for s in page["StreamInfoList"] + rest["StreamInfoList"]] == ["cam-1", "cam-2", "other"]

    v1 = info["Version"]
    kv.update_data_retention(StreamName="cam-1", CurrentVersion=v1, Operation="INCREASE_DATA_RETENTION",
                             DataRetentionChangeInHours=48)
    code, msg = error_code(lambda: kv.update_stream(StreamName="cam-1", CurrentVersion=v1, DeviceName="x"))
    assert code == "VersionMismatchException", msg
    v2 = kv.describe_stream(StreamName="cam-1")["StreamInfo"]["Version"]
    kv.update_stream(StreamName="cam-1", CurrentVersion=v2, DeviceName="gate")
    info = kv.describe_stream(StreamName="cam-1")["StreamInfo"]
    assert (info["DataRetentionInHours"], info["DeviceName"]) == (72, "gate")

    kv.tag_stream(StreamName="cam-1", Tags={"team": "ops"})
    kv.untag_stream(StreamARN=arn, TagKeyList=["site"])
    assert kv.list_tags_for_stream(StreamName="cam-1")["Tags"] == {"team": "ops"}
    for api in ("PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_HLS_STREAMING_SESSION_URL", "GET_CLIP"):
        assert kv.get_data_endpoint(StreamName="cam-1", APIName=api)["DataEndpoint"] == h.url

    assert error_code(lambda: kv.create_stream(StreamName="cam-1"))[0] == "ResourceInUseException"
    assert error_code(lambda: kv.describe_stream(StreamName="nope"))[0] == "ResourceNotFoundException"
    code, msg = error_code(lambda: kv.create_stream(StreamName="bad name"))
    assert code == "InvalidArgumentException" and "StreamName" in msg, msg
    code, msg = error_code(lambda: kv.create_stream(StreamName="x", DataRetentionInHours=90000))
    assert code == "InvalidArgumentException" and "DataRetentionInHours" in msg

    # Definitions survive a restart; a deleted stream is gone.
    assert h.terminate() == 0
    h.start()
    kv = client(h, "kinesisvideo")
    assert kv.describe_stream(StreamName="cam-1")["StreamInfo"]["DeviceName"] == "gate"
    kv.delete_stream(StreamARN=kv.describe_stream(StreamName="cam-2")["StreamInfo"]["StreamARN"])
    assert [s["StreamName"] for s in kv.list_streams()["StreamInfoList"]] == ["cam-1", "other"]


def fragments_of(h, stream, key=("test", "test")):
    am = client(h, "kinesis-video-archived-media", key)
    out, token = [], None
    while True:
        kw = {"StreamName": stream, "MaxResults": 2}
        if token:
            kw["NextToken"] = token
        r = am.list_fragments(**kw)
        out += r["Fragments"]
        token = r.get("NextToken")
        if not token:
            return sorted(out, key=lambda f: f["FragmentNumber"])


def test_signed_put_media_is_acknowledged_while_open_and_plays_back_frame_identically(
        hydrant_factory, source, tmp_path):
    h = hydrant_factory(AUTH).start()
    key = ("AKIDVIDEO", "video-secret")
    client(h, "kinesisvideo", key).create_stream(StreamName="cam", DataRetentionInHours=24)
    data = source.read_bytes()
    n_clusters = len(clusters(data))
    assert n_clusters == 6

    p = upload(h.port, signed_headers(h.url, "cam", key), data, chunk=4096, pace=0.02)
    assert p.status == 200
    persisted = p.events("PERSISTED")
    assert len(persisted) == n_clusters, p.acks
    assert len(p.events("BUFFERING")) == n_clusters and len(p.events("RECEIVED")) == n_clusters
    assert not p.events("ERROR"), p.acks
    # Acknowledged while the upload was still going: the first PERSISTED
    # came before the last byte was sent (the upload is paced over ~0.6 s).
    first_persisted = next(t for t, a in p.acks if a["EventType"] == "PERSISTED")
    assert first_persisted < p.finished_at, (first_persisted, p.finished_at)
    timecodes = [a["FragmentTimecode"] for a in persisted]
    assert timecodes == [c[3] for c in clusters(data)]

    frags = fragments_of(h, "cam", key)
    assert [f["FragmentNumber"] for f in frags] == [a["FragmentNumber"] for a in persisted]
    assert all(900 <= f["FragmentLengthInMilliseconds"] <= 1100 for f in frags[:-1]), frags
    am = client(h, "kinesis-video-archived-media", key)
    body = am.get_media_for_fragment_list(StreamName="cam", Fragments=[f["FragmentNumber"] for f in frags])
    out = tmp_path / "played.mkv"
    out.write_bytes(body["Payload"].read())
    assert frame_count(out) == 150
    assert framemd5(out) == framemd5(source)

    media = client(h, "kinesis-video-media", key)
    r = media.get_media(StreamName="cam", StartSelector={"StartSelectorType": "EARLIEST"})
    got = b""
    stream = r["Payload"]
    while got.count(b"AWS_KINESISVIDEO_CONTINUATION_TOKEN") < n_clusters:
        piece = stream.read(65536)
        if not piece:
            break
        got += piece
    stream.close()
    assert got.count(b"AWS_KINESISVIDEO_FRAGMENT_NUMBER") == n_clusters
    assert frags[2]["FragmentNumber"].encode() in got
    live = tmp_path / "get_media.mkv"
    live.write_bytes(got)
    assert framemd5(live) == framemd5(source)

    # Resuming after the third fragment gives the last three.
    r = media.get_media(StreamName="cam", StartSelector={
        "StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": frags[2]["FragmentNumber"]})
    got = b""
    while got.count(b"AWS_KINESISVIDEO_CONTINUATION_TOKEN") < 3:
        piece = r["Payload"].read(65536)
        if not piece:
            break
        got += piece
    r["Payload"].close()
    assert frags[3]["FragmentNumber"].encode() in got and frags[2]["FragmentNumber"].encode() not in got.split(b"AWS_KINESISVIDEO_FRAGMENT_NUMBER", 1)[1][:64]

    # A wrong signature is refused before any media is read.
    bad = upload(h.port, signed_headers(h.url, "cam", ("AKIDVIDEO", "wrong")), data[:1000])
    assert bad.status == 400 and b"InvalidSignatureException" in bad.error_body, bad.error_body
    assert h.metric("video_incoming_fragments", stream="cam") == n_clusters


def test_ffmpeg_chunked_post_is_ingested_without_reading_acknowledgements(hydrant_factory, tmp_path):
    h = hydrant_factory("").start()
    client(h, "kinesisvideo").create_stream(StreamName="ff", DataRetentionInHours=1)
    cmd = ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
           "-bf", "0", "-pix_fmt", "yuv420p", "-f", "matroska", "-live", "1", "-cluster_size_limit", "50000000",
           "-method", "POST",
           "-chunked_post", "1", "-headers",
           "x-amzn-stream-name: ff\r\nx-amzn-fragment-timecode-type: RELATIVE\r\n"
           f"x-amzn-producer-start-timestamp: {time.time():.3f}\r\n",
           f"{h.url}/putMedia"]
    subprocess.run(cmd, check=True, timeout=60)
    frags = wait_until(lambda: (lambda f: f if len(f) >= 4 else None)(fragments_of(h, "ff")), timeout=30,
                       what="4 fragments from ffmpeg")
    am = client(h, "kinesis-video-archived-media")
    body = am.get_media_for_fragment_list(StreamName="ff", Fragments=[f["FragmentNumber"] for f in frags])
    out = tmp_path / "ff.mkv"
    out.write_bytes(body["Payload"].read())
    assert frame_count(out) == 100


@pytest.mark.parametrize("case", ["garbage", "long_gop", "backwards", "four_tracks"])
def test_bad_media_gets_its_error_code_and_nothing_else_is_lost(hydrant_factory, source, tmp_path, case):
    h = hydrant_factory("").start()
    client(h, "kinesisvideo").create_stream(StreamName="bad", DataRetentionInHours=1)
    headers = signed_headers(h.url, "bad")
    good = source.read_bytes()
    if case == "garbage":
        data, code, persisted = b"\x00garbage, not MKV\xff" * 100, 4006, 0
    elif case == "long_gop":
        data = make_mkv(tmp_path / "gop.mkv", seconds=16, gop=300).read_bytes()  # 12 s, then 4 s
        code, persisted = 4002, 1
    elif case == "backwards":
        data = with_timecode(good, 3, 500)  # the 4th fragment claims 0.5 s, after 2 s
        code, persisted = 4004, 5
    else:
        data = make_mkv(tmp_path / "four.mkv", seconds=3, extra_audio=3).read_bytes()
        code, persisted = 4012, 0
    p = upload(h.port, headers, data, chunk=16384)
    errors = p.events("ERROR")
    assert [e["ErrorId"] for e in errors][:1] == [code], p.acks
    assert len(p.events("PERSISTED")) == persisted, p.acks
    assert len(fragments_of(h, "bad")) == persisted
    assert h.metric("video_errors", stream="bad", code=str(code)) >= 1
    # The stream takes good media after it.
    p = upload(h.port, signed_headers(h.url, "bad"), good, chunk=65536)
    assert len(p.events("PERSISTED")) == 6, p.acks
    assert h.healthy()


def test_sigkill_after_persisted_keeps_every_fragment_listed_and_playable(hydrant_factory, source, tmp_path):
    h = hydrant_factory("").start()
    client(h, "kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
    p = upload(h.port, signed_headers(h.url, "cam"), source.read_bytes(), chunk=65536)
    persisted = [a["FragmentNumber"] for a in p.events("PERSISTED")]
    assert len(persisted) == 6
    h.kill()
    h.start()
    frags = fragments_of(h, "cam")
    assert [f["FragmentNumber"] for f in frags] == persisted
    body = client(h, "kinesis-video-archived-media").get_media_for_fragment_list(
        StreamName="cam", Fragments=persisted)
    out = tmp_path / "after-kill.mkv"
    out.write_bytes(body["Payload"].read())
    assert framemd5(out) == framemd5(source)


@pytest.mark.parametrize("variant", ["h264", "bframes_aac"])
def test_hls_on_demand_and_get_clip_play_every_frame_of_the_source(hydrant_factory, tmp_path, variant):
    src = make_mkv(tmp_path / "src.mkv", bframes=2 if variant == "bframes_aac" else 0,
                   audio=variant == "bframes_aac")
    h = hydrant_factory("").start()
    client(h, "kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
    p = upload(h.port, signed_headers(h.url, "cam"), src.read_bytes(), chunk=65536)
    assert len(p.events("PERSISTED")) == 6, p.acks
    am = client(h, "kinesis-video-archived-media")
    url = am.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="ON_DEMAND",
                                           HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP"},
                                           Expires=300)["HLSStreamingSessionURL"]
    assert url.startswith(h.url + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=")
    assert frame_count(url) == 150
    assert framemd5(url) == framemd5(src)
    if variant == "bframes_aac":
        assert framemd5(url, "a:0") == framemd5(src, "a:0")
    # A changed token is refused.
    import urllib.request
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"))
    assert e.value.code == 403

    frags = fragments_of(h, "cam")
    start, end = frags[0]["ServerTimestamp"], frags[-1]["ServerTimestamp"]
    clip = am.get_clip(StreamName="cam", ClipFragmentSelector={
        "FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": {"StartTimestamp": start, "EndTimestamp": end}})
    out = tmp_path / "clip.mp4"
    out.write_bytes(clip["Payload"].read())
    assert clip["ContentType"] == "video/mp4"
    assert frame_count(out) == 150
    assert framemd5(out) == framemd5(src)
    # The producer's clock: fragments 1 s apart (the upload took far less).
    part = am.get_clip(StreamName="cam", ClipFragmentSelector={
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": frags[1]["ProducerTimestamp"], "EndTimestamp": frags[2]["ProducerTimestamp"]}})
    out2 = tmp_path / "part.mp4"
    out2.write_bytes(part["Payload"].read())
    assert frame_count(out2) == 50
    assert h.metric("video_hls_bytes", stream="cam") > 0


def test_hls_live_plays_while_ffmpeg_is_still_pushing(hydrant_factory, tmp_path):
    h = hydrant_factory("").start()
    client(h, "kinesisvideo").create_stream(StreamName="live", DataRetentionInHours=1)
    cmd = ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=12",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
           "-bf", "0", "-pix_fmt", "yuv420p", "-f", "matroska", "-live", "1", "-cluster_size_limit", "50000000",
           "-method", "POST", "-chunked_post", "1", "-headers",
           "x-amzn-stream-name: live\r\nx-amzn-fragment-timecode-type: RELATIVE\r\n"
           f"x-amzn-producer-start-timestamp: {time.time():.3f}\r\n", f"{h.url}/putMedia"]
    pusher = subprocess.Popen(cmd)
    try:
        wait_until(lambda: len(fragments_of(h, "live")) >= 3, timeout=30, what="3 live fragments")
        url = client(h, "kinesis-video-archived-media").get_hls_streaming_session_url(
            StreamName="live", PlaybackMode="LIVE")["HLSStreamingSessionURL"]
        assert pusher.poll() is None, "ffmpeg finished before the live session was played"
        n = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                            "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", "-live_start_index", "0",
                            "-max_reload", "1", url], capture_output=True, timeout=60)
        frames = int(next((x for x in n.stdout.decode().splitlines() if x.strip()), "0").split(",")[0])
        assert frames >= 75, n.stderr.decode()[-2000:]
        # The live media playlist moves on while ffmpeg pushes.
        import urllib.request
        master = urllib.request.urlopen(url).read().decode()
        media_url = url.rsplit("/", 1)[0] + "/" + next(x for x in master.splitlines() if x and not x.startswith("#"))
        def last_segment():
            text = urllib.request.urlopen(media_url).read().decode()
            assert "#EXT-X-ENDLIST" not in text
            return [x for x in text.splitlines() if x and not x.startswith("#")][-1]
        first = last_segment()
        wait_until(lambda: last_segment() != first, timeout=10, what="a newer live segment")
        assert pusher.poll() is None or pusher.returncode == 0
    finally:
        pusher.wait(60)


def test_fragments_are_archived_as_playable_mkv_objects_once_across_sigkill(hydrant_factory, garage, bucket,
                                                                           source, tmp_path):
    from conftest import s3_store_yaml
    from harness import read_objects
    cfg = s3_store_yaml(garage) + SHORT_IDLE + f"""  archive:
    destination: {{ type: s3, bucket: {bucket}, prefix: archive/ }}
    streams: ["cam-*"]
"""
    h = hydrant_factory(cfg).start()
    kv = client(h, "kinesisvideo")
    kv.create_stream(StreamName="cam-1", DataRetentionInHours=24)
    kv.create_stream(StreamName="other", DataRetentionInHours=24)
    data = source.read_bytes()
    first = upload(h.port, signed_headers(h.url, "cam-1"), data, chunk=65536)
    upload(h.port, signed_headers(h.url, "other"), data, chunk=65536)
    assert len(first.events("PERSISTED")) == 6
    s3 = garage.s3()
    objs = wait_until(lambda: (lambda o: o if len(o) >= 6 else None)(read_objects(s3, bucket, "archive/")),
                      timeout=30, what="6 archived fragments")
    numbers = [a["FragmentNumber"] for a in first.events("PERSISTED")]
    assert sorted(k.rsplit("/", 1)[1] for k in objs) == sorted(f"{n}.mkv" for n in numbers)
    assert all(k.startswith("archive/") and "/cam-1/" in k for k in objs), list(objs)
    for k, body in objs.items():
        f = tmp_path / k.replace("/", "_")
        f.write_bytes(body)
        assert frame_count(f) == 25, k
    joined = tmp_path / "joined.mkv"
    joined.write_bytes(b"".join(body for _, body in sorted(objs.items(), key=lambda kv: kv[0].rsplit("/", 1)[1])))
    assert framemd5(joined) == framemd5(source)

    # SIGKILL, more media, restart: every fragment archived, each once.
    h.kill()
    h.start()
    second = upload(h.port, signed_headers(h.url, "cam-1"), data, chunk=65536)
    numbers += [a["FragmentNumber"] for a in second.events("PERSISTED")]
    assert len(numbers) == 12
    objs = wait_until(lambda: (lambda o: o if len(o) >= 12 else None)(read_objects(s3, bucket, "archive/")),
                      timeout=30, what="12 archived fragments")
    assert sorted(k.rsplit("/", 1)[1] for k in objs) == sorted(f"{n}.mkv" for n in numbers)


def read_chunks(payload, n, limit=50):
    """Reads a GetMedia payload until it holds `n` fragments (or ends)."""
    got = b""
    for _ in range(limit):
        if got.count(b"AWS_KINESISVIDEO_FRAGMENT_NUMBER") >= n:
            break
        piece = payload.read(4096)
        if not piece:
            break
        got += piece
    payload.close()
    return got


def numbers_in(got: bytes, frags) -> list:
    return [f["FragmentNumber"] for f in frags if f["FragmentNumber"].encode() in got]


def test_get_media_start_selectors_and_session_bounds(hydrant_factory, source):
    h = hydrant_factory(SHORT_IDLE + "  sessions_per_stream_max: 1\n").start()
    client(h, "kinesisvideo").create_stream(StreamName="cam", DataRetentionInHours=24)
    data = source.read_bytes()
    p = upload(h.port, signed_headers(h.url, "cam"), data, chunk=65536)
    assert len(p.events("PERSISTED")) == 6
    frags = fragments_of(h, "cam")
    media = client(h, "kinesis-video-media")

    def start(**sel):
        return media.get_media(StreamName="cam", StartSelector=sel)["Payload"]

    # Producer time of fragment 3 plus half a second: the fragment holding it.
    at = frags[3]["ProducerTimestamp"].timestamp() + 0.5
    got = read_chunks(start(StartSelectorType="PRODUCER_TIMESTAMP", StartTimestamp=at), 3)
    assert numbers_in(got, frags) == [f["FragmentNumber"] for f in frags[3:6]]
    got = read_chunks(start(StartSelectorType="SERVER_TIMESTAMP",
                            StartTimestamp=frags[0]["ServerTimestamp"]), 6)
    assert numbers_in(got, frags) == [f["FragmentNumber"] for f in frags]
    got = read_chunks(start(StartSelectorType="CONTINUATION_TOKEN",
                            ContinuationToken=frags[4]["FragmentNumber"]), 1)
    assert numbers_in(got, frags) == [frags[5]["FragmentNumber"]]
    # NOW: only what is persisted from now on; here nothing, so it ends empty.
    assert numbers_in(read_chunks(start(StartSelectorType="NOW"), 1), frags) == []
    code, msg = error_code(lambda: media.get_media(StreamName="cam", StartSelector={
        "StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": "123"}))
    assert code == "ResourceNotFoundException", msg

    # One session at a time: a second upload while one is open is refused.
    from video_media import PutMedia
    first = PutMedia(h.port, signed_headers(h.url, "cam"))
    first.send(data[:1000])
    time.sleep(0.3)
    second = upload(h.port, signed_headers(h.url, "cam"), data[:1000])
    assert second.status == 400 and b"ConnectionLimitExceededException" in second.error_body
    first.finish()
    assert h.metric("video_get_media_bytes", stream="cam") > 0
