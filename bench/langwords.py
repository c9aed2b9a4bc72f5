"""Common words per language for the generated language pages (bench/langpages.py), written here so
nothing downloads. Each list holds everyday words and, on purpose, the letters a reader gets wrong:
German ß and umlauts, French accents and ligatures, Polish ł ż ś, Turkish ı ş ğ, Vietnamese stacked
diacritics, Greek tonos, Ukrainian ї є ґ.
"""
from __future__ import annotations

_RAW: dict[str, str] = {
    "en": """the of and to in is it you that he was for on are with as his they be at one have this from
        or had by word but what some we can out other were all there when up use your how said an each she
        which do their time if will way about many then them write would like so these her long make thing
        see him two has look more day could go come did number sound no most people my over know water than
        call first who may down side been now find""",
    "de": """der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an
        werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben
        nur oder aber vor zur bis mehr durch man sein wurde groß Straße Größe weiß Fuß heißen schön müssen
        können Tür Bücher Mädchen Äpfel Öl Übung grün fünf Brücke Füße Grüße Frühstück Käse Bäcker Mütze
        Schlüssel hören König Maß Spaß schließen außen täglich Wörter Stück""",
    "es": """el la de que y en un ser se no haber por con su para como estar tener le lo todo pero más hacer
        poder decir este ir otro ese si me ya ver porque dar cuando muy sin vez mucho saber qué sobre mi
        alguno mismo yo también hasta año dos querer entre así primero desde grande eso ni nos llegar pasar
        tiempo ella sí día uno bien poco deber entonces poner cosa tanto hombre parecer nuestro tan donde
        ahora parte después vida quedar siempre creer hablar llevar dejar nada cada seguir menos nuevo niño
        señor mañana corazón canción árbol jardín información está además país según última""",
    "pt": """de a o que e do da em um para é com não uma os no se na por mais as dos como mas foi ao ele das
        tem à seu sua ou ser quando muito há nos já está eu também só pelo pela até isso ela entre era depois
        sem mesmo aos ter seus quem nas me esse eles estão você tinha foram essa num nem suas meu às minha têm
        numa pelos elas havia seja qual será nós tenho lhe deles este fosse dele coração ação informação mãe
        irmão pão então lição avó avô café próximo público órgão nosso nossa""",
    "pl": """i w nie na się z do to że jest a jak co ale o tak po od za jego już tylko dla przez jako może
        czy są był być ich jej mnie bardzo kiedy który także gdzie przed wszystko teraz żeby jeszcze nawet
        ponieważ więc tutaj dzień dobry łóżko żółty źródło ściana książka mówić język dziękuję proszę
        człowiek miłość szkoła łatwo ładny mąż żona życie później sześć gęś wieś pięć ręka miasto dziś głowa
        ogród ulica pociąg chleb woda dom rodzina praca""",
    "fr": """le de un être et à il avoir ne je son que se qui ce dans en du elle au pour pas vous par sur
        faire plus dire me on mon lui nous comme mais pouvoir avec tout aller voir bien où sans tu ou leur
        homme si deux moi vouloir te femme venir quand grand celui notre devoir là jour prendre même votre
        rien petit encore aussi quelque dont mer trouver donner temps ça peu falloir sous parler alors
        premier été école élève très après déjà château forêt hôpital fenêtre garçon français leçon noël
        naïf cœur sœur œuvre côté âge fête""",
    "tr": """bir ve bu da de için ne ile çok ama gibi daha olarak sonra kadar en var yok ben sen o biz siz
        onlar her şey şimdi nasıl neden çünkü büyük küçük güzel iyi kötü yeni eski zaman gün yıl insan çocuk
        kadın erkek ev okul su ışık kapı kız ılık kışın ağaç göz yüz söz dünya şehir köy iş çalışmak yapmak
        gelmek gitmek görmek bilmek istemek sevmek konuşmak düşünmek öğretmen öğrenci kitap masa sandalye
        kırmızı sarı yeşil mavi siyah beyaz teşekkür lütfen evet hayır günaydın akşam sabah öğle""",
    "vi": """và của là có không một những được trong người cho này với các đã để đến khi nhiều về ra như
        từ cũng thì nhưng năm làm nói sẽ lại hơn nào đi thể gì rất mình phải việc nhà ngày tôi anh chị em
        họ chúng ta bạn nước Việt Nam thời gian học sinh trường đường phố thành công đất cuộc sống yêu
        thương hạnh phúc tiếng nghĩ biết muốn mới cũ đẹp tốt lớn nhỏ ăn uống ngủ chơi đọc viết hiểu ở trên
        dưới trước sau giữa giờ phút tháng tuần chữ mẫu sữa cẩn thận""",
    "el": """και το να η του της με που την από για τα είναι ο στο δεν θα τον οι σε στην ένα μια στη των
        τους ότι στα αλλά ή μου σου πολύ όταν μας αυτό αυτή καλά όλα εγώ εσύ εμείς σήμερα αύριο χθες σπίτι
        νερό ψωμί δρόμος πόλη χώρα άνθρωπος παιδί γυναίκα άνδρας μέρα νύχτα ώρα χρόνος ζωή αγάπη φίλος
        δουλειά σχολείο βιβλίο θάλασσα ήλιος ουρανός καλημέρα ευχαριστώ παρακαλώ ναι όχι μεγάλος μικρός
        καινούργιος παλιός ωραίος γράφω διαβάζω μιλάω ακούω βλέπω τρώω πίνω""",
    "ru": """и в не на я быть он с что а по это она этот к но они мы как из у который то за свой весь год
        от так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один уже до
        время если сам когда другой вот говорить наш мой знать стать при чтобы дело жизнь кто первый очень
        два день её новый рука даже во со раз где там под можно ну какой после их работа без самый потом
        надо хотеть ли слово идти большой должен место иметь спасибо пожалуйста здравствуйте хорошо город
        улица дом школа объявление подъезд ёлка""",
    "uk": """і в не на я що він з це та як до але ти так за все від ми ви вони вона воно був бути мати
        який коли тут там де ще вже дуже добре день ніч рік час людина життя робота місто село вулиця школа
        книга слово мова українська дякую будь ласка привіт ні їжа їхати їсти ґанок ґудзик євро єдиний
        батьківщина земля вода хліб сонце небо серце любов друг родина пісня великий малий новий старий
        гарний читати писати говорити знати її їхній""",
    "ar": """في من على إلى أن هذا هذه التي الذي كان عن مع ما لا هو هي كل بين قد أو بعد ثم حتى عند كانت
        لم لن إذا كما أي نحن أنت أنا هم يوم سنة وقت عمل بيت مدرسة كتاب قلم ماء خبز شمس قمر سماء أرض مدينة
        شارع باب نافذة طريق سيارة رجل امرأة ولد بنت أب أم أخ أخت صديق حب سلام شكرا مرحبا جميل كبير صغير
        جديد قديم كثير قليل اليوم غدا أمس صباح مساء ليل نهار العربية الحياة العالم الناس""",
    "he": """של את על לא זה הוא היא אני אתה אנחנו הם עם כל גם אבל או כי מה מי איך למה כן יש אין היה היו
        יום לילה שנה זמן בית ספר ילד ילדה איש אישה אבא אמא אח אחות חבר עבודה עיר רחוב דרך מים לחם שמש
        ירח שמים ארץ שלום תודה בבקשה טוב רע גדול קטן חדש ישן יפה הרבה מעט עכשיו היום מחר אתמול בוקר ערב
        אהבה חיים עולם אנשים שפה עברית מדינה משפחה""",
    "hi": """और का के की है में से को एक यह पर हैं था कि भी नहीं तो ही हो कर गया जो लिए वह साथ अपने कुछ
        बहुत अब जब तक कोई किसी सब हम आप मैं तुम वे उन इस उस घर पानी खाना दिन रात साल समय लोग आदमी औरत
        बच्चा काम शहर गाँव सड़क स्कूल किताब भाषा हिंदी भारत देश दुनिया प्यार दोस्त परिवार धन्यवाद नमस्ते
        अच्छा बुरा बड़ा छोटा नया पुराना सुंदर जाना आना देखना सुनना बोलना पढ़ना लिखना""",
    "ta": """ஒரு மற்றும் இந்த அந்த என்று அது இது நான் நீ அவர் அவள் நாம் நீங்கள் அவர்கள் இல்லை உள்ளது
        வேண்டும் செய்ய வந்து போ வா வீடு தண்ணீர் உணவு நாள் இரவு ஆண்டு நேரம் மக்கள் மனிதன் பெண் குழந்தை
        வேலை நகரம் கிராமம் சாலை பள்ளி புத்தகம் மொழி தமிழ் நாடு உலகம் அன்பு நண்பன் குடும்பம் நன்றி
        வணக்கம் நல்ல பெரிய சிறிய புதிய பழைய அழகான பார் கேள் பேசு படி எழுது அம்மா அப்பா அண்ணன் தம்பி
        அக்கா தங்கை மழை சூரியன் நிலா கடல் மரம் பூ""",
    "te": """ఒక మరియు ఈ ఆ అని అది ఇది నేను నువ్వు అతను ఆమె మనం మీరు వారు లేదు ఉంది కావాలి వచ్చు
        వెళ్ళు ఇల్లు నీరు ఆహారం రోజు రాత్రి సంవత్సరం సమయం ప్రజలు మనిషి స్త్రీ పిల్ల పని నగరం గ్రామం
        రోడ్డు బడి పుస్తకం భాష తెలుగు దేశం ప్రపంచం ప్రేమ స్నేహితుడు కుటుంబం ధన్యవాదాలు నమస్కారం మంచి
        పెద్ద చిన్న కొత్త పాత అందమైన చూడు విను మాట్లాడు చదువు అమ్మ నాన్న అన్న తమ్ముడు అక్క చెల్లి
        వర్షం సూర్యుడు చంద్రుడు సముద్రం చెట్టు పువ్వు""",
    "ko": """나 너 우리 그 이 저 것 수 있다 없다 하다 되다 보다 오다 가다 주다 알다 모르다 사람 집 학교
        회사 일 시간 오늘 내일 어제 아침 저녁 밤 물 밥 빵 커피 책 말 한국 한국어 나라 세계 도시 길 차
        친구 가족 사랑 감사합니다 안녕하세요 좋다 나쁘다 크다 작다 새로운 오래된 예쁘다 많다 적다 먹다
        마시다 읽다 쓰다 듣다 말하다 생각 문제 정부 경제 사회 문화 역사 음식 날씨 하늘 바다 산 강""",
    "th": """และ ของ ที่ ใน เป็น มี ไม่ การ ได้ ให้ จะ ว่า กับ คน นี้ ไป มา อยู่ แล้ว ก็ เรา เขา ฉัน คุณ
        บ้าน น้ำ ข้าว วัน คืน ปี เวลา งาน เมือง ถนน โรงเรียน หนังสือ ภาษา ไทย ประเทศ โลก ความรัก เพื่อน
        ครอบครัว ขอบคุณ สวัสดี ดี ใหญ่ เล็ก ใหม่ เก่า สวย มาก น้อย กิน ดื่ม อ่าน เขียน ฟัง พูด คิด รู้ ทำ
        เห็น ต้อง อาหาร อากาศ ท้องฟ้า ทะเล ภูเขา แม่น้ำ ตลาด รถ""",
    "ja": """私 あなた 彼 彼女 これ それ あれ ここ そこ 日本 日本語 東京 学校 会社 仕事 時間 今日 明日 昨日
        朝 夜 水 ご飯 お茶 本 言葉 国 世界 町 道 車 電車 駅 友達 家族 愛 ありがとう こんにちは 大きい 小さい
        新しい 古い 美しい 多い 少ない 食べる 飲む 読む 書く 聞く 話す 見る 行く 来る する ある いる 問題
        政府 経済 社会 文化 歴史 料理 天気 空 海 山 川 花 春 夏 秋 冬 先生 学生 病院 銀行 カメラ テレビ
        コーヒー ホテル""",
    "zh": """中国 北京 上海 时间 工作 学校 朋友 家庭 今天 明天 昨天 早上 晚上 水 饭 茶 书 语言 国家 世界
        城市 道路 汽车 火车 车站 爱 谢谢 你好 大 小 新 旧 美丽 多 少 吃 喝 读 写 听 说 看 去 来 问题 政府
        经济 社会 文化 历史 天气 天空 大海 山 河 花 春天 夏天 秋天 冬天 老师 学生 医院 银行 公司 电脑 手机
        发展 我们 他们 什么 没有 可以 因为 所以 但是 已经 现在 的 是 不 了 在 人 有 我 他 这""",
}

WORDS: dict[str, tuple[str, ...]] = {code: tuple(dict.fromkeys(text.split())) for code, text in _RAW.items()}
