"""Tiny hand-written raw files, one set per loader format (a few rows each, same story everywhere):

    user 1 rates item 10 (5 stars, t=100) and item 20 (3 stars, t=200)
    user 2 rates item 10 (4 stars, t=150) and item 30 (1 star,  t=150)
    user 3 rates item 40 (2 stars, t=300)          item 40 has no text at all
"""

from __future__ import annotations

from pathlib import Path

import pytest


def write(path: Path, text: str, *, encoding: str = "utf-8", crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode(encoding))
    return path


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> Path:
    """A tiny real image (its format from the suffix: .jpg -> JPEG, .png -> PNG), made with PIL."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


@pytest.fixture
def recbole_dir(tmp_path: Path) -> Path:
    d = tmp_path / "recbole"
    write(d / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "1\t10\t5\t100\n1\t20\t3\t200\n2\t10\t4\t150\n2\t30\t1\t150\n3\t40\t2\t300\n")
    write(d / "ml-100k.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
          "10\tToy Story\t1995\tAnimation Comedy\n20\tHeat\t1995\tAction\n"
          "30\tUsual Suspects, The\t1995\tCrime Thriller\n40\t\t\t\n")
    write(d / "ml-100k.user", "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
          "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n3\t23\tM\twriter\t32067\n")
    return d


def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


@pytest.fixture
def grouplens_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-100k"
    write(d / "u.data", "1\t10\t5\t100\n1\t20\t3\t200\n2\t10\t4\t150\n2\t30\t1\t150\n3\t40\t2\t300\n")
    write(d / "u.item", f"10|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 5)}\n"
          f"20|Café Society (1995)|01-Jan-1995||http://x|{_flags(1)}\n"
          f"30|Usual Suspects, The (1995)|01-Jan-1995||http://x|{_flags(6, 16)}\n"
          f"40||||http://x|{_flags()}\n", encoding="latin-1")
    write(d / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    return d


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::10::5::100\n1::20::3::200\n2::10::4::150\n2::30::1::150\n3::40::2::300\n")
    write(d / "movies.dat", "10::Toy Story (1995)::Animation|Comedy\n20::Café Society (1995)::Action\n"
          "30::Usual Suspects, The (1995)::Crime|Thriller\n40::::\n", encoding="latin-1")
    write(d / "users.dat", "1::M::25::17::85711\n2::F::50::0::94043\n3::M::18::20::32067\n")
    return d


@pytest.fixture
def latest_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-latest-small"
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,5.0,100\n1,20,3.0,200\n2,10,4.0,150\n"
          "2,30,1.0,150\n3,40,2.0,300\n", crlf=True)
    write(d / "movies.csv", 'movieId,title,genres\n10,Toy Story (1995),Animation|Comedy\n'
          '20,"Heat, the ""Movie"" (1995)",Action\n30,"Usual Suspects, The (1995)",Crime|Thriller\n'
          '40,,(no genres listed)\n', crlf=True)
    write(d / "tags.csv", "userId,movieId,tag,timestamp\n1,10,Pixar,100\n2,10,pixar,101\n2,10,fun,102\n"
          "1,20,heist,103\n", crlf=True)
    return d


@pytest.fixture
def amazon_dir(tmp_path: Path) -> Path:
    d = tmp_path / "amazon"
    rows = [("1", "10", 5.0, 100), ("1", "20", 3.0, 200), ("2", "10", 4.0, 150), ("2", "30", 1.0, 150),
            ("3", "40", 2.0, 300)]
    write(d / "All_Beauty.jsonl", "".join(
        f'{{"rating": {r}, "title": "t", "text": "x", "images": [], "asin": "A{i}", "parent_asin": "{i}", '
        f'"user_id": "{u}", "timestamp": {t * 1000 + 999}, "helpful_vote": 0, "verified_purchase": true}}\n'
        for u, i, r, t in rows))
    write(d / "meta_All_Beauty.jsonl",
          '{"main_category": "Beauty", "title": "Lip Balm", "features": ["Soft", "Vegan"], "description": '
          '["Daily care."], "categories": ["Lips", "Balm"], "store": "Acme", "parent_asin": "10", "images": []}\n'
          '{"main_category": "Beauty", "title": "Serum", "features": [], "description": [], "categories": [], '
          '"store": null, "parent_asin": "20"}\n'
          '{"main_category": null, "title": "Brush, \\"pro\\"", "features": null, "description": null, '
          '"categories": null, "store": "B", "parent_asin": "30"}\n'
          '{"parent_asin": "40"}\n')
    write_image(d / "images" / "10.jpg")
    return d


@pytest.fixture
def microlens_dir(tmp_path: Path) -> Path:
    d = tmp_path / "microlens"
    write(d / "MicroLens-50k_pairs.csv", "user,item,timestamp\n1,10,100000\n1,20,200000\n2,10,150000\n"
          "2,30,150000\n3,40,300000\n")
    write(d / "MicroLens-50k_titles.csv", 'item,title\n10,Cat video\n20,"Dance, dance"\n30,Cooking\n40,\n')
    write_image(d / "MicroLens-50k_covers" / "20.jpg")
    return d


@pytest.fixture
def generic_dir(tmp_path: Path) -> Path:
    d = tmp_path / "generic"
    write(d / "interactions.csv", "user_id,item_id,ts,rating\n1,10,100,5\n1,20,200,3\n2,10,150,4\n"
          "2,30,150,1\n3,40,300,2\n")
    write(d / "items.csv", 'item_id,text\n10,Toy Story\n20,"Heat, ""the"" movie"\n30,Suspects\n40,\n')
    return d


KUAIRAND_LOG_HEADER = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
                       "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
                       "is_profile_enter,is_rand,tab\n")


def kuairand_row(user: int, video: int, t: int, click: int, is_rand: int = 0) -> str:
    """One log row in KuaiRand's published column order; time_ms = t s + 999 ms (floored back to t)."""
    return f"{user},{video},20220421,400,{t * 1000 + 999},{click},0,0,0,0,0,{click},1510,10440,0,0,0,{is_rand},1\n"


@pytest.fixture
def kuairand_dir(tmp_path: Path) -> Path:
    """KuaiRand-Pure layout; the same story split over the two standard logs, plus a random-exposure log
    (user 1 clicks item 30 at t=400, user 2 skips item 40 at t=500)."""
    d = tmp_path / "kuairand"
    write(d / "log_standard_4_08_to_4_21_pure.csv", KUAIRAND_LOG_HEADER + kuairand_row(1, 10, 100, 1)
          + kuairand_row(1, 20, 200, 0) + kuairand_row(2, 10, 150, 1))
    write(d / "log_standard_4_22_to_5_08_pure.csv", KUAIRAND_LOG_HEADER + kuairand_row(2, 30, 150, 0)
          + kuairand_row(3, 40, 300, 0))
    write(d / "log_random_4_22_to_5_08_pure.csv", KUAIRAND_LOG_HEADER + kuairand_row(1, 30, 400, 1, 1)
          + kuairand_row(2, 40, 500, 0, 1))
    write(d / "video_features_basic_pure.csv",
          "video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,"
          "server_height,music_id,music_type,tag\n"
          '10,441,NORMAL,2020-07-08,ShortImport,1,17200.0,720,1280,989206467,4,"12,65"\n'
          "20,442,AD,2021-01-02,LongImport,1,9000.0,720,1280,0,0,8\n"
          "30,443,NORMAL,2021-03-04,ShortImport,1,,720,1280,0,0,\n"
          "40,444,,,,1,,,,,,\n")
    return d


@pytest.fixture
def kuairec_dir(tmp_path: Path) -> Path:
    """KuaiRec 2.0 layout. watch_ratio 2.5 / 1.0 / 2.0 / 0.3 / 1.99 -> label (>= 2.0) 1, 0, 1, 0, 0; float
    timestamps floor to the story's times; Chinese captions, KuaiRec's "UNKNOWN" placeholders."""
    d = tmp_path / "kuairec"
    write(d / "big_matrix.csv", "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
          "1,10,25000,10000,1970-01-01 00:01:40.438,19700101,100.438,2.5\n"
          "1,20,10000,10000,1970-01-01 00:03:20.000,19700101,200.0,1.0\n"
          "2,10,20000,10000,1970-01-01 00:02:30.200,19700101,150.2,2.0\n"
          "2,30,3000,10000,1970-01-01 00:02:30.900,19700101,150.9,0.3\n"
          "3,40,19900,10000,1970-01-01 00:05:00.000,19700101,300,1.99\n")
    write(d / "kuairec_caption_category.csv",
          "video_id,manual_cover_text,caption,topic_tag,first_level_category_id,first_level_category_name,"
          "second_level_category_id,second_level_category_name,third_level_category_id,third_level_category_name\n"
          "10,UNKNOWN,\"猫咪, 日常\",['萌宠'],1,宠物,2,猫,-124,UNKNOWN\n"
          "20,封面字,做饭,[],3,美食,-124,UNKNOWN,-124,UNKNOWN\n"
          "30,,旅行,\"['旅行', '风景']\",5,旅游,-124,UNKNOWN,-124,UNKNOWN\n"
          "40,UNKNOWN,,[],-124,UNKNOWN,-124,UNKNOWN,-124,UNKNOWN\n")
    return d
